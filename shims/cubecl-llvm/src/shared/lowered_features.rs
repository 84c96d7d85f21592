//! Narrowing a device's advertised features to what the LLVM backend lowers.

use cubecl_core::ir::DeviceProperties;

/// The GPU target whose lowering the features are narrowed for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GpuTarget {
    /// NVIDIA PTX.
    Nvptx,
}

/// Leaves `props` as they are.
///
/// `cubecl-cuda` calls this only when the LLVM backend compiles, so that a consumer does not
/// pick an algorithm that backend cannot lower. This stand-in lowers nothing: every kernel is
/// refused with [`crate::NO_LLVM`] whatever is advertised, so there is no subset that would
/// turn a failing launch into a working one, and narrowing would only hide that error behind a
/// different algorithm choice.
pub fn restrict_features(props: &mut DeviceProperties, target: GpuTarget) {
    let _ = (props, target);
}
