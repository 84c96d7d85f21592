//! What the LLVM backend shares between targets: only the feature narrowing.

pub mod lowered_features;
