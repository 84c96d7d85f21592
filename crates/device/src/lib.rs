//! A party's compute device, chosen at run time from a string such as `cpu`, `flex`, `wgpu` or
//! `cuda:0`.
//!
//! Burn 0.22 carries the backend inside [`burn::tensor::Device`], so model code is written once
//! and a [`DeviceSpec`] decides where a party's slice runs. Which backends exist is fixed at
//! build time by this crate's Cargo features (`ndarray`, `flex`, `wgpu`, `cuda`; none by
//! default: the application picks); asking for one that was not compiled in is an error that
//! names the missing feature, never a panic.
//!
//! The two CPU backends have their own names, `ndarray` and `flex`; `cpu` is an alias for
//! [`CPU_ALIAS`].

use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::str::FromStr;

use burn::tensor::{Device, Tensor};

/// Where a party's tensors live.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeviceSpec {
    /// The CPU backend that `cpu` names: [`CPU_ALIAS`] (see [`DeviceSpec::resolve`]).
    Cpu,
    /// Burn's ndarray CPU backend, named explicitly (`ndarray`).
    NdArray,
    /// wgpu: Vulkan, Metal or DX12; the adapter wgpu ranks best, or the n-th discrete GPU.
    Wgpu(Option<usize>),
    /// CUDA device by index.
    Cuda(usize),
    /// Burn's newer pure-Rust CPU backend (`flex`), the successor of ndarray.
    Flex,
}

/// The backend the device name `cpu` ([`DeviceSpec::Cpu`]) means: ndarray, as before the CPU
/// backends had their own names. This is the one place that defines the alias; which CPU
/// backend it should be is left to a later performance issue, to settle by measurement.
pub const CPU_ALIAS: DeviceSpec = DeviceSpec::NdArray;

const _: () = assert!(
    matches!(CPU_ALIAS, DeviceSpec::NdArray | DeviceSpec::Flex),
    "CPU_ALIAS must name a CPU backend"
);
/// Errors while choosing or opening a device.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DeviceError {
    /// The string is not a device name.
    #[error(
        "unknown device `{0}`: expected `cpu`, `ndarray`, `flex`, `wgpu`, `wgpu:N`, `cuda` or \
         `cuda:N`"
    )]
    Unknown(String),
    /// The backend exists but this build did not compile it in.
    #[error("device `{spec}` needs splitlm built with the `{feature}` Cargo feature")]
    NotCompiled {
        /// The device asked for.
        spec: String,
        /// The Cargo feature that enables it.
        feature: &'static str,
    },
    /// The backend is compiled in but the machine has no usable device for it.
    #[error("device `{spec}` is not usable on this machine: {reason}")]
    Unavailable {
        /// The device asked for.
        spec: String,
        /// What went wrong while opening it.
        reason: String,
    },
}

impl DeviceSpec {
    /// The backend that runs this device: [`CPU_ALIAS`] for [`DeviceSpec::Cpu`], the device
    /// itself otherwise.
    pub fn resolve(&self) -> DeviceSpec {
        match self {
            DeviceSpec::Cpu => CPU_ALIAS,
            other => *other,
        }
    }

    /// The Cargo feature that compiles this backend in.
    pub fn feature(&self) -> &'static str {
        match self {
            DeviceSpec::Cpu => CPU_ALIAS.feature(),
            DeviceSpec::NdArray => "ndarray",
            DeviceSpec::Wgpu(_) => "wgpu",
            DeviceSpec::Cuda(_) => "cuda",
            DeviceSpec::Flex => "flex",
        }
    }

    /// Whether this build contains the backend.
    pub fn is_compiled(&self) -> bool {
        match self {
            DeviceSpec::Cpu => CPU_ALIAS.is_compiled(),
            DeviceSpec::NdArray => cfg!(feature = "ndarray"),
            DeviceSpec::Wgpu(_) => cfg!(feature = "wgpu"),
            DeviceSpec::Cuda(_) => cfg!(feature = "cuda"),
            DeviceSpec::Flex => cfg!(feature = "flex"),
        }
    }

    /// The Burn device for inference (no autodiff). Call `.autodiff()` on it to train.
    ///
    /// Opening is lazy in Burn; use [`DeviceSpec::probe`] to check that the device really works.
    pub fn device(&self) -> Result<Device, DeviceError> {
        if !self.is_compiled() {
            return Err(DeviceError::NotCompiled {
                spec: self.to_string(),
                feature: self.feature(),
            });
        }
        Ok(self.open_compiled())
    }

    #[allow(unreachable_code, unused_variables)]
    fn open_compiled(&self) -> Device {
        match *self {
            DeviceSpec::Cpu => return CPU_ALIAS.open_compiled(),
            DeviceSpec::NdArray => {
                #[cfg(feature = "ndarray")]
                #[allow(deprecated)]
                // Burn deprecates ndarray in favour of flex; see README.
                return Device::ndarray();
            }
            DeviceSpec::Wgpu(index) => {
                #[cfg(feature = "wgpu")]
                return Device::wgpu(match index {
                    Some(n) => burn::tensor::DeviceKind::DiscreteGpu(n),
                    None => burn::tensor::DeviceKind::DefaultDevice,
                });
            }
            DeviceSpec::Cuda(index) => {
                #[cfg(feature = "cuda")]
                return Device::cuda(index);
            }
            DeviceSpec::Flex => {
                #[cfg(feature = "flex")]
                return Device::flex();
            }
        }
        unreachable!("is_compiled() guards every backend")
    }

    /// Opens the device and runs a tiny computation, turning a backend panic (no Vulkan driver,
    /// no CUDA runtime) into [`DeviceError::Unavailable`].
    ///
    /// CUDA is checked first for what its backend needs at run time (the driver's libcuda, a
    /// device at the index, NVRTC, the CUDA headers): the backend `unwrap`s those on the thread
    /// that serves the device, where the panic cannot be caught here, only seen as a dead channel.
    pub fn probe(&self) -> Result<Device, DeviceError> {
        let device = self.device()?;
        #[cfg(feature = "cuda")]
        if let DeviceSpec::Cuda(index) = *self {
            cuda::check(index).map_err(|reason| self.unavailable(reason))?;
        }
        let check = device.clone();
        let result = catch_unwind(AssertUnwindSafe(move || {
            let x = Tensor::<1>::from_floats([1.0, 2.0, 3.0], &check);
            x.sum().into_scalar::<f32>()
        }));
        match result {
            Ok(sum) if (sum - 6.0).abs() < 1e-6 => Ok(device),
            Ok(sum) => Err(self.unavailable(format!("probe computed {sum} instead of 6"))),
            Err(panic) => {
                let message = panic_message(panic.as_ref());
                // The CUDA backend starts the device on its own thread; when that panics, the
                // caller's panic is only the closed channel. The real message is on stderr.
                #[cfg(feature = "cuda")]
                let message = match self {
                    DeviceSpec::Cuda(_) if message.contains("RecvError") => format!(
                        "the CUDA backend panicked while opening the device (its message is \
                         printed above): {message}"
                    ),
                    _ => message,
                };
                Err(self.unavailable(message))
            }
        }
    }

    fn unavailable(&self, reason: String) -> DeviceError {
        DeviceError::Unavailable {
            spec: self.to_string(),
            reason,
        }
    }
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "the backend panicked while opening the device".to_string()
    }
}

/// What the CUDA backend loads at run time, checked without touching the backend.
#[cfg(feature = "cuda")]
mod cuda {
    /// `Err` names the first missing piece and what provides it; see README, "CUDA".
    pub(crate) fn check(index: usize) -> Result<(), String> {
        // SAFETY: each `is_culib_present` only opens and closes the library (cudarc's own search:
        // the same names and loader path the backend will use); no symbol is called.
        if !unsafe { cudarc::driver::sys::is_culib_present() } {
            return Err(
                "no CUDA driver: libcuda.so.1 is not on the loader path (the NVIDIA driver \
                 installs it)"
                    .to_string(),
            );
        }
        cudarc::driver::result::init()
            .map_err(|err| format!("the CUDA driver does not start (cuInit): {err}"))?;
        let count = cudarc::driver::result::device::get_count()
            .map_err(|err| format!("the CUDA driver cannot count devices: {err}"))?;
        if index >= usize::try_from(count).unwrap_or(0) {
            return Err(format!("the CUDA driver sees {count} device(s)"));
        }
        // SAFETY: as above.
        if !unsafe { cudarc::nvrtc::sys::is_culib_present() } {
            return Err(
                "no NVRTC: libnvrtc.so.12 is not on the loader path (LD_LIBRARY_PATH); \
                 the kernels are compiled with it (scripts/cuda-runtime.sh)"
                    .to_string(),
            );
        }
        // cubecl-cuda hands NVRTC `<CUDA_PATH>/include` and panics at the first kernel when it
        // finds no CUDA directory (CUDA_PATH, else /usr/local/cuda, /opt/cuda, /usr).
        let headers = cubecl_cuda::install::cuda_path().map(|path| path.join("include"));
        match headers {
            Some(include) if include.join("cuda_fp16.h").is_file() => Ok(()),
            Some(include) => Err(format!(
                "no CUDA headers: {} has no cuda_fp16.h; set CUDA_PATH to a directory whose \
                 include/ holds the CUDA headers (scripts/cuda-runtime.sh)",
                include.display()
            )),
            None => Err(
                "no CUDA headers: CUDA_PATH is not set and there is no /usr/local/cuda or \
                 /opt/cuda; set CUDA_PATH to a directory whose include/ holds the CUDA \
                 headers (scripts/cuda-runtime.sh)"
                    .to_string(),
            ),
        }
    }
}

impl FromStr for DeviceSpec {
    type Err = DeviceError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let lower = s.trim().to_ascii_lowercase();
        let (name, index) = match lower.split_once(':') {
            Some((name, index)) => {
                let index = index
                    .parse::<usize>()
                    .map_err(|_| DeviceError::Unknown(s.to_string()))?;
                (name, Some(index))
            }
            None => (lower.as_str(), None),
        };
        match (name, index) {
            ("cpu", None) => Ok(DeviceSpec::Cpu),
            ("ndarray", None) => Ok(DeviceSpec::NdArray),
            ("wgpu" | "vulkan", index) => Ok(DeviceSpec::Wgpu(index)),
            ("cuda", index) => Ok(DeviceSpec::Cuda(index.unwrap_or(0))),
            ("flex", None) => Ok(DeviceSpec::Flex),
            _ => Err(DeviceError::Unknown(s.to_string())),
        }
    }
}

impl fmt::Display for DeviceSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceSpec::Cpu => write!(f, "cpu"),
            DeviceSpec::NdArray => write!(f, "ndarray"),
            DeviceSpec::Wgpu(None) => write!(f, "wgpu"),
            DeviceSpec::Wgpu(Some(n)) => write!(f, "wgpu:{n}"),
            DeviceSpec::Cuda(n) => write!(f, "cuda:{n}"),
            DeviceSpec::Flex => write!(f, "flex"),
        }
    }
}

impl serde::Serialize for DeviceSpec {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for DeviceSpec {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// The device names this build can use, for `--help` texts and error messages (`cpu` when
/// the backend it aliases is compiled in).
pub fn compiled_backends() -> Vec<&'static str> {
    [
        (DeviceSpec::Cpu.is_compiled(), "cpu"),
        (cfg!(feature = "ndarray"), "ndarray"),
        (cfg!(feature = "flex"), "flex"),
        (cfg!(feature = "wgpu"), "wgpu"),
        (cfg!(feature = "cuda"), "cuda"),
    ]
    .into_iter()
    .filter_map(|(on, name)| on.then_some(name))
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_device_names() {
        for (text, spec) in [
            ("cpu", DeviceSpec::Cpu),
            ("ndarray", DeviceSpec::NdArray),
            ("NdArray", DeviceSpec::NdArray),
            ("wgpu", DeviceSpec::Wgpu(None)),
            ("wgpu:1", DeviceSpec::Wgpu(Some(1))),
            ("CUDA:2", DeviceSpec::Cuda(2)),
            ("cuda", DeviceSpec::Cuda(0)),
            ("flex", DeviceSpec::Flex),
        ] {
            assert_eq!(text.parse::<DeviceSpec>().unwrap(), spec, "{text}");
        }
        assert_eq!(DeviceSpec::Cuda(3).to_string(), "cuda:3");
        assert_eq!(DeviceSpec::Wgpu(None).to_string(), "wgpu");
        for spec in [
            DeviceSpec::Cpu,
            DeviceSpec::NdArray,
            DeviceSpec::Flex,
            DeviceSpec::Wgpu(None),
            DeviceSpec::Wgpu(Some(2)),
            DeviceSpec::Cuda(1),
        ] {
            assert_eq!(spec.to_string().parse::<DeviceSpec>().unwrap(), spec);
        }
    }

    #[test]
    fn cpu_is_an_alias_of_a_named_cpu_backend() {
        assert_eq!(DeviceSpec::Cpu.resolve(), CPU_ALIAS);
        assert_eq!("cpu".parse::<DeviceSpec>().unwrap().resolve(), CPU_ALIAS);
        assert_eq!(DeviceSpec::Cpu.feature(), CPU_ALIAS.feature());
        assert_eq!(DeviceSpec::Cpu.is_compiled(), CPU_ALIAS.is_compiled());
        assert_eq!(DeviceSpec::NdArray.resolve(), DeviceSpec::NdArray);
        assert_eq!(DeviceSpec::Flex.resolve(), DeviceSpec::Flex);
        assert_eq!(DeviceSpec::NdArray.feature(), "ndarray");
        assert_eq!(DeviceSpec::Flex.feature(), "flex");
        // Today's alias: what `cpu` meant before the backends had names.
        assert_eq!(CPU_ALIAS, DeviceSpec::NdArray);
    }

    #[test]
    fn rejects_unknown_names_with_the_name() {
        for bad in ["tpu", "cuda:x", "cpu:1", ""] {
            let err = bad.parse::<DeviceSpec>().unwrap_err();
            assert!(err.to_string().contains(&format!("`{bad}`")), "{err}");
        }
    }

    #[test]
    fn missing_backend_names_its_feature() {
        for (spec, feature) in [
            (DeviceSpec::Cuda(0), "cuda"),
            (DeviceSpec::Wgpu(None), "wgpu"),
            (DeviceSpec::NdArray, "ndarray"),
            (DeviceSpec::Flex, "flex"),
            (DeviceSpec::Cpu, CPU_ALIAS.feature()),
        ] {
            if !spec.is_compiled() {
                let err = spec.device().unwrap_err();
                let text = err.to_string();
                assert!(
                    text.contains(&format!("`{feature}` Cargo feature")),
                    "{text}"
                );
                assert!(text.contains(&format!("`{spec}`")), "{text}");
            }
        }
    }

    #[test]
    fn cpu_probe_computes() {
        for spec in [DeviceSpec::Cpu, DeviceSpec::NdArray, DeviceSpec::Flex] {
            if spec.is_compiled() {
                spec.probe()
                    .unwrap_or_else(|e| panic!("the {spec} backend works everywhere: {e}"));
            }
        }
    }

    /// Without a GPU (CI), a CUDA build refuses the device with a reason instead of panicking
    /// or aborting; with one, the probe computes.
    #[cfg(feature = "cuda")]
    #[test]
    fn cuda_probe_names_what_is_missing() {
        let spec: DeviceSpec = "cuda".parse().unwrap();
        match spec.probe() {
            Ok(_) => {}
            Err(DeviceError::Unavailable { spec, reason }) => {
                assert_eq!(spec, "cuda:0");
                // SAFETY: opens and closes the library only.
                if !unsafe { cudarc::driver::sys::is_culib_present() } {
                    assert!(reason.contains("libcuda"), "{reason}");
                }
                assert!(
                    ["libcuda", "cuInit", "device", "NVRTC", "CUDA headers"]
                        .iter()
                        .any(|what| reason.contains(what)),
                    "{reason}"
                );
            }
            Err(other) => panic!("expected Unavailable, got {other}"),
        }
        // A missing device index is refused the same way, never opened.
        assert!(matches!(
            DeviceSpec::Cuda(4096).probe(),
            Err(DeviceError::Unavailable { .. })
        ));
    }

    #[test]
    fn compiled_backends_match_the_features() {
        let names = compiled_backends();
        assert_eq!(names.contains(&"cpu"), DeviceSpec::Cpu.is_compiled());
        assert_eq!(names.contains(&"ndarray"), cfg!(feature = "ndarray"));
        assert_eq!(names.contains(&"flex"), cfg!(feature = "flex"));
        for name in names {
            assert!(name.parse::<DeviceSpec>().unwrap().is_compiled(), "{name}");
        }
    }
}
