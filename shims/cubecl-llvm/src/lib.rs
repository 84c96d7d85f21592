//! Stand-in for `cubecl-llvm` 0.11.3 without LLVM (see this crate's README).
//!
//! It holds exactly what `cubecl-cuda` 0.11.3 names from `cubecl-llvm`: the compiler and
//! artifact types of its pliron/LLVM backend, the PTX version it chooses from the driver, and the
//! feature narrowing it applies for that backend. `cubecl-cuda` with its `cpp` feature compiles
//! kernels with NVRTC and never reaches the LLVM items; if it did, [`PlironCompiler`] refuses
//! every kernel with a [`CompilationError::Generic`] that names this crate.

#![deny(missing_docs)]

pub mod nvptx;
pub mod shared;

use core::convert::Infallible;
use core::ffi::c_char;
use core::fmt;

use cubecl_core::environment::backtrace::BackTrace;
use cubecl_core::ir::attributes::BufferIOAttr;
use cubecl_core::ir::nvidia::SmArch;
use cubecl_core::prelude::KernelDefinition;
use cubecl_core::{CompilationError, Compiler};

use nvptx::ptx_version::PtxVersion;

/// What the LLVM backend would have compiled for. Only NVPTX is named by `cubecl-cuda`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LlvmTarget {
    /// NVIDIA PTX.
    Nvptx,
}

/// The pliron/LLVM kernel compiler, without LLVM: [`Compiler::compile`] always fails.
#[derive(Clone, Debug)]
pub struct PlironCompiler {
    /// The target it was configured for.
    pub target: LlvmTarget,
}

/// The options `cubecl-cuda` fills in for the LLVM backend. Nothing reads them here.
#[derive(Clone, Debug, Default)]
pub struct PlironOptions {
    /// AMDGPU architecture. This stand-in has no AMDGPU target, so the only value is `None`.
    pub arch: Option<Infallible>,
    /// The NVIDIA architecture compiled for.
    pub sm_arch: Option<SmArch>,
    /// The PTX version to emit.
    pub ptx_version: Option<PtxVersion>,
    /// Whether scalars and metadata travel in the kernel parameter block.
    pub grid_constants: bool,
}

/// A PTX module as the LLVM backend produces it. Never constructed by this stand-in.
#[derive(Clone, Debug)]
pub struct NvptxModule {
    /// NUL-terminated PTX text, as the CUDA driver loads it.
    pub ptx: Vec<c_char>,
    /// The IR the PTX came from, for logs.
    pub ir: String,
    /// Dynamic shared memory the launch reserves, in bytes.
    pub shared_memory_size: usize,
    /// What the kernel does with each buffer binding, in binding order.
    pub io: Vec<BufferIOAttr>,
}

/// A compiled kernel. Non-exhaustive: the real crate has other targets' artifacts.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum PlironArtifact {
    /// PTX for the CUDA driver.
    NvptxCode(NvptxModule),
}

impl fmt::Display for PlironArtifact {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PlironArtifact::NvptxCode(module) => f.write_str(&module.ir),
        }
    }
}

/// The reason every compile fails, worded for whoever reads the launch error.
pub const NO_LLVM: &str = "this build has no LLVM backend: `cubecl-llvm` is splitlm's stand-in \
     (shims/cubecl-llvm), and CUDA kernels compile through NVRTC only, which needs \
     `cubecl-cuda`'s `cpp` feature (splitlm-device's `cuda` feature turns it on)";

impl Compiler for PlironCompiler {
    type Representation = PlironArtifact;
    type CompilationOptions = PlironOptions;

    fn compile(
        &mut self,
        _kernel: KernelDefinition,
        _options: &Self::CompilationOptions,
    ) -> Result<Self::Representation, CompilationError> {
        Err(CompilationError::Generic {
            reason: NO_LLVM.to_string(),
            backtrace: BackTrace::capture(),
        })
    }

    fn buffer_io(repr: &Self::Representation) -> Option<Vec<BufferIOAttr>> {
        match repr {
            PlironArtifact::NvptxCode(module) => Some(module.io.clone()),
        }
    }

    fn extension(&self) -> &'static str {
        match self.target {
            LlvmTarget::Nvptx => "ll",
        }
    }

    fn lang_tag(&self) -> &'static str {
        match self.target {
            LlvmTarget::Nvptx => "llvm",
        }
    }
}
