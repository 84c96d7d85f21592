//! The NVPTX target: only the PTX version choice, which `cubecl-cuda` reads from the driver.

pub mod ptx_version;
