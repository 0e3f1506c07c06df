use ember_driver::prelude::*;

#[test]
fn local_map_reduce_by_key() {
    for master in ["local[2]", "local-cluster[2,1,512]"] {
        let ctx = Context::new(master).unwrap();
        let r = ctx.parallelize((0..100u64).collect(), 4).unwrap();
        let mut v = r
            .map(|x| (x % 3, x))
            .reduce_by_key(|a, b| a + b)
            .collect()
            .unwrap();
        v.sort();
        assert_eq!(v, vec![(0, 1683), (1, 1617), (2, 1650)], "{master}");
        assert_eq!(r.count().unwrap(), 100);
    }
}
