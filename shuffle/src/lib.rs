//! Shuffle: map-side writer, reduce-side reader, map-output tracker.
