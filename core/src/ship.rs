//! Shipping user code to executors on stable Rust.
//!
//! Closures cannot be serialized, so Ember ships code in two pieces:
//!
//! * **User functions must not capture.** A non-capturing closure is a
//!   zero-sized type; [`Shipped<F>`] serializes as nothing and the executor
//!   materializes the same closure from its type alone. A capturing closure
//!   fails to compile (a `const` assertion inside [`Shipped::new`] names it).
//!   Values a function needs travel explicitly (`map_with(env, |env, x| ..)`)
//!   or as broadcast handles.
//! * **Type-erased nodes travel as function offsets.** The executor runs the
//!   same binary as the driver, so a monomorphized decoder function sits at
//!   the same offset from a fixed anchor function in both processes, even
//!   under address randomization. [`FnOffset`] carries that offset;
//!   [`BuildId`] makes sure the binary really is the same.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::marker::PhantomData;
use std::sync::OnceLock;

/// A user function shipped by type: it must be zero-sized (a closure that
/// captures nothing, or a function item).
#[derive(Clone, Copy)]
pub struct Shipped<F>(F);

impl<F: Copy + Send + Sync + 'static> Shipped<F> {
    const ZERO_SIZED: () = assert!(
        std::mem::size_of::<F>() == 0,
        "Ember user functions must not capture variables: pass values with the \
         `*_with(env, ..)` variant of the operation or a broadcast variable"
    );

    /// Wraps `f`; fails to compile when `f` captures anything.
    pub fn new(f: F) -> Self {
        #[allow(clippy::let_unit_value)]
        let () = Self::ZERO_SIZED;
        Shipped(f)
    }

    /// The function.
    pub fn get(&self) -> F {
        self.0
    }

    fn materialize() -> Self {
        #[allow(clippy::let_unit_value)]
        let () = Self::ZERO_SIZED;
        // SAFETY: `F` is zero-sized (checked at compile time above), so a
        // value of it has no bytes to initialize. It is inhabited: the only
        // way to name an `F` here is through a `Shipped<F>` the driver built
        // with `new` from a real value, and `F: Copy`, so conjuring one is
        // the same as copying that value. Exercised by
        // `tests::a_zero_sized_closure_survives_a_round_trip`.
        Shipped(unsafe { std::mem::zeroed::<F>() })
    }
}

impl<F> Serialize for Shipped<F> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_unit()
    }
}

impl<'de, F: Copy + Send + Sync + 'static> Deserialize<'de> for Shipped<F> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        <()>::deserialize(d)?;
        Ok(Self::materialize())
    }
}

/// The fixed point that function offsets are measured from.
#[inline(never)]
fn anchor() -> u64 {
    // A body that cannot be merged with another function's.
    std::hint::black_box(0x656d_6265_7200_0001)
}

/// A function of this binary, named by its distance from a fixed function
/// of this crate (the same in every process of one build).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct FnOffset<Sig> {
    offset: i64,
    #[serde(skip)]
    sig: PhantomData<fn() -> Sig>,
}

impl<Sig> FnOffset<Sig> {
    /// The offset of `f`, which must be a function pointer of type `Sig`.
    pub fn of(f: Sig) -> Self
    where
        Sig: Copy,
    {
        const { assert!(std::mem::size_of::<Sig>() == std::mem::size_of::<usize>()) };
        // SAFETY: `Sig` is a function pointer type (size checked above;
        // every caller passes `fn(..)` values), so its bits are an address.
        let addr: usize = unsafe { std::mem::transmute_copy(&f) };
        FnOffset {
            offset: addr as i64 - anchor as *const () as usize as i64,
            sig: PhantomData,
        }
    }

    /// The function again, in this process.
    ///
    /// # Safety
    /// The offset must come from [`FnOffset::of`] with the same `Sig` in a
    /// process running the same binary (the executor checks the
    /// [`BuildId`] at registration before it resolves any offset).
    pub unsafe fn resolve(self) -> Sig {
        let addr = (anchor as *const () as usize as i64 + self.offset) as usize;
        // SAFETY: per the caller's contract `addr` is the address of a
        // function of type `Sig` in this binary.
        unsafe { std::mem::transmute_copy(&addr) }
    }
}

/// Identity of the running binary: a hash of its bytes.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct BuildId(pub String);

impl BuildId {
    /// The build id of this process's executable, computed once.
    pub fn current() -> &'static BuildId {
        static ID: OnceLock<BuildId> = OnceLock::new();
        ID.get_or_init(|| {
            let exe = std::env::current_exe().ok();
            let hash = exe
                .and_then(|p| std::fs::read(p).ok())
                .map(|bytes| xxhash_rust::xxh3::xxh3_64(&bytes))
                .unwrap_or(0);
            BuildId(format!("{hash:016x}"))
        })
    }
}

impl std::fmt::Display for BuildId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ship<F: Fn(u32) -> u32 + Copy + Send + Sync + 'static>(f: F) -> Vec<u8> {
        crate::codec::encode(&Shipped::new(f)).unwrap()
    }

    fn unship<F: Fn(u32) -> u32 + Copy + Send + Sync + 'static>(_: F, b: &[u8]) -> Shipped<F> {
        crate::codec::decode(b, "closure").unwrap()
    }

    #[test]
    fn a_zero_sized_closure_survives_a_round_trip() {
        let f = |x: u32| x * 3 + 1;
        let bytes = ship(f);
        assert_eq!(bytes.len(), 1, "a shipped closure is just a unit marker");
        let g = unship(f, &bytes);
        assert_eq!(g.get()(5), 16);
    }

    fn double(x: u64) -> u64 {
        x * 2
    }

    #[test]
    fn function_offsets_resolve_to_the_same_function() {
        let off = FnOffset::of(double as fn(u64) -> u64);
        let bytes = crate::codec::encode(&off).unwrap();
        let back: FnOffset<fn(u64) -> u64> = crate::codec::decode(&bytes, "fn").unwrap();
        // SAFETY: the offset was made in this very process from this type.
        let f = unsafe { back.resolve() };
        assert_eq!(f(21), 42);
    }

    #[test]
    fn build_id_is_stable_within_a_process() {
        assert_eq!(BuildId::current(), BuildId::current());
        assert_ne!(BuildId::current().0, "0000000000000000");
    }
}
