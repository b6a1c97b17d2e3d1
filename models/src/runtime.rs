//! What the MLX runtime we are linked against offers: version, backend, devices, memory.
//!
//! mlx-rs wraps none of the version or device-info calls, so they go to mlx-c directly here, in
//! one place. `Device::try_default()` runs first in each entry point: it installs mlx-rs's error
//! handler, without which mlx-c's default handler would exit the process on any error.

use std::collections::BTreeMap;
use std::ffi::CStr;

use mlx_rs::{Device, DeviceType};
use serde::Serialize;

/// One MLX device and what MLX says about it.
#[derive(Clone, Debug, Serialize)]
pub struct DeviceInfo {
    /// "cpu" or "gpu".
    pub kind: &'static str,
    pub index: i32,
    /// Whether MLX can run on it in this process.
    pub available: bool,
    /// Keys and values from `mlx_device_info` (e.g. device_name, memory_size), as strings.
    pub properties: BTreeMap<String, String>,
}

impl DeviceInfo {
    pub fn property(&self, key: &str) -> Option<&str> {
        self.properties.get(key).map(String::as_str)
    }

    pub fn device(&self) -> Device {
        Device::new(
            if self.kind == "gpu" {
                DeviceType::Gpu
            } else {
                DeviceType::Cpu
            },
            self.index,
        )
    }
}

/// The MLX library version string, e.g. "0.32.2".
pub fn mlx_version() -> String {
    let _ = Device::try_default();
    // SAFETY: mlx_string is an owned handle; we copy its bytes before freeing it.
    unsafe {
        let mut s = mlx_sys::mlx_string_new();
        let text = if mlx_sys::mlx_version(&mut s) == 0 {
            CStr::from_ptr(mlx_sys::mlx_string_data(s))
                .to_string_lossy()
                .into_owned()
        } else {
            "unknown".to_owned()
        };
        mlx_sys::mlx_string_free(s);
        text
    }
}

/// The accelerator backend of the loaded libmlx: "cuda", "metal" or "cpu" (none).
pub fn backend() -> &'static str {
    let _ = Device::try_default();
    let mut cuda = false;
    let mut metal = false;
    // SAFETY: plain out-parameters.
    unsafe {
        mlx_sys::mlx_cuda_is_available(&mut cuda);
        mlx_sys::mlx_metal_is_available(&mut metal);
    }
    if cuda {
        "cuda"
    } else if metal {
        "metal"
    } else {
        "cpu"
    }
}

/// Every CPU and GPU device MLX reports, with its properties.
pub fn devices() -> Vec<DeviceInfo> {
    let _ = Device::try_default();
    let mut out = Vec::new();
    for (kind, device_type) in [("cpu", DeviceType::Cpu), ("gpu", DeviceType::Gpu)] {
        let mut count = 0;
        // SAFETY: plain out-parameter.
        if unsafe { mlx_sys::mlx_device_count(&mut count, device_type.into()) } != 0 {
            continue;
        }
        for index in 0..count {
            let device = RawDevice::new(device_type, index);
            let mut available = false;
            // SAFETY: `device` outlives the call.
            unsafe { mlx_sys::mlx_device_is_available(&mut available, device.0) };
            let properties = if available {
                properties(&device)
            } else {
                BTreeMap::new()
            };
            out.push(DeviceInfo {
                kind,
                index,
                available,
                properties,
            });
        }
    }
    out
}

/// The device new arrays and ops go to unless told otherwise.
pub fn default_device() -> Option<DeviceInfo> {
    let default = Device::try_default().ok()?;
    devices().into_iter().find(|d| d.device() == default)
}

/// An mlx-c device handle of our own (mlx-rs keeps its handle private), freed on drop.
struct RawDevice(mlx_sys::mlx_device);

impl RawDevice {
    fn new(device_type: DeviceType, index: i32) -> RawDevice {
        // SAFETY: creates an owned handle, freed in Drop.
        RawDevice(unsafe { mlx_sys::mlx_device_new_type(device_type.into(), index) })
    }
}

impl Drop for RawDevice {
    fn drop(&mut self) {
        // SAFETY: the handle was created by mlx_device_new_type and is freed once.
        unsafe { mlx_sys::mlx_device_free(self.0) };
    }
}

fn properties(device: &RawDevice) -> BTreeMap<String, String> {
    let mut props = BTreeMap::new();
    // SAFETY: every handle created here is freed before returning; strings are copied out.
    unsafe {
        let mut info = mlx_sys::mlx_device_info_new();
        if mlx_sys::mlx_device_info_get(&mut info, device.0) == 0 {
            let mut keys = mlx_sys::mlx_vector_string_new();
            if mlx_sys::mlx_device_info_get_keys(&mut keys, info) == 0 {
                for i in 0..mlx_sys::mlx_vector_string_size(keys) {
                    let mut key_ptr: *mut std::os::raw::c_char = std::ptr::null_mut();
                    if mlx_sys::mlx_vector_string_get(&mut key_ptr, keys, i) != 0
                        || key_ptr.is_null()
                    {
                        continue;
                    }
                    let key = CStr::from_ptr(key_ptr).to_string_lossy().into_owned();
                    if let Some(value) = property_value(info, key_ptr) {
                        props.insert(key, value);
                    }
                }
            }
            mlx_sys::mlx_vector_string_free(keys);
        }
        mlx_sys::mlx_device_info_free(info);
    }
    props
}

unsafe fn property_value(
    info: mlx_sys::mlx_device_info,
    key: *const std::os::raw::c_char,
) -> Option<String> {
    let mut is_string = false;
    if mlx_sys::mlx_device_info_is_string(&mut is_string, info, key) != 0 {
        return None;
    }
    if is_string {
        let mut value: *const std::os::raw::c_char = std::ptr::null();
        (mlx_sys::mlx_device_info_get_string(&mut value, info, key) == 0 && !value.is_null())
            .then(|| CStr::from_ptr(value).to_string_lossy().into_owned())
    } else {
        let mut value: usize = 0;
        (mlx_sys::mlx_device_info_get_size(&mut value, info, key) == 0).then(|| value.to_string())
    }
}

/// The file the dynamic loader loaded libmlx from (dladdr on one of its symbols: Linux and macOS),
/// so that a user can see which wheel (CPU, CUDA or Metal) this process really runs on.
pub fn mlx_library_path() -> Option<String> {
    mlx_sys::loaded::libmlx_path().map(|path| path.display().to_string())
}

/// MLX allocator figures in bytes.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct MemoryFigures {
    pub active: usize,
    pub peak: usize,
    pub cache: usize,
    /// The allocator's limit (MLX derives it from the device's memory).
    pub limit: usize,
}

pub fn memory() -> MemoryFigures {
    use mlx_rs::memory as m;
    MemoryFigures {
        active: m::active_memory().unwrap_or(0),
        peak: m::peak_memory().unwrap_or(0),
        cache: m::cache_memory().unwrap_or(0),
        limit: m::memory_limit().unwrap_or(0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_the_mlx_version_the_build_pinned() {
        assert_eq!(mlx_version(), "0.32.2");
    }

    #[test]
    fn finds_the_libmlx_this_process_loaded() {
        let _ = mlx_version();
        let path = mlx_library_path().expect("libmlx is loaded");
        let expected = if cfg!(target_os = "macos") {
            "/libmlx.dylib"
        } else {
            "/libmlx.so"
        };
        assert!(path.ends_with(expected), "{path}");
        // On Linux, the same file the kernel mapped.
        #[cfg(target_os = "linux")]
        {
            let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
            let mapped = maps
                .lines()
                .filter_map(|line| line.split_whitespace().nth(5))
                .find(|p| p.ends_with("/libmlx.so"))
                .expect("libmlx is mapped");
            let same = |p: &str| std::fs::canonicalize(p).unwrap();
            assert_eq!(same(&path), same(mapped));
        }
    }

    #[test]
    fn lists_an_available_cpu_device_with_the_default_among_devices() {
        let devices = devices();
        assert!(
            devices.iter().any(|d| d.kind == "cpu" && d.available),
            "{devices:?}"
        );
        let default = default_device().expect("default device is listed");
        assert!(default.available);
    }
}
