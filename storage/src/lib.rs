//! Block manager: cached RDD partitions by storage level.
