//! Where an instance will compute, as `cfrun run` sees it before anything runs: what an op's
//! preflight checks the instance against (the device's arithmetic, the memory it may use).

use candle_core::DeviceLocation;

/// The device an instance computes on, and the host memory its tensors there may take.
#[derive(Debug, Clone)]
pub struct Site {
    /// The device its tensors live on.
    pub device: DeviceLocation,
    /// The host memory it may use, when its tensors are in host memory and the amount is known.
    pub memory: Option<Memory>,
}

/// An amount of host memory and whose it is, for messages.
#[derive(Debug, Clone)]
pub struct Memory {
    /// Bytes.
    pub bytes: u64,
    /// Whose memory it is: `this machine's`, `the job's (resources.mem)`.
    pub whose: String,
}

impl Site {
    /// A site whose memory is not known (or not host memory): only the device is checked.
    pub fn device(device: DeviceLocation) -> Site {
        Site { device, memory: None }
    }

    /// This process on `device`: on the CPU, this machine's memory.
    pub fn here(device: DeviceLocation) -> Site {
        let memory = matches!(device, DeviceLocation::Cpu)
            .then(|| Memory { bytes: crate::config::limits::machine_memory(), whose: "this machine's".into() });
        Site { device, memory }
    }

    /// A cluster job on `device` granted `mem_mb` MiB: on the CPU, that memory.
    pub fn job(device: DeviceLocation, mem_mb: u64) -> Site {
        let memory = matches!(device, DeviceLocation::Cpu)
            .then(|| Memory { bytes: mem_mb.saturating_mul(1 << 20), whose: "the job's (resources.mem)".into() });
        Site { device, memory }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Host memory counts only where the tensors are in it: on the CPU, this machine's or the
    /// job's grant; on a GPU nothing is claimed (the check it feeds then passes).
    #[test]
    fn memory_is_known_only_for_host_tensors() {
        let gpu = DeviceLocation::Cuda { gpu_id: 0 };
        assert!(Site::here(gpu).memory.is_none() && Site::job(gpu, 8192).memory.is_none());
        let job = Site::job(DeviceLocation::Cpu, 8192).memory.unwrap();
        assert_eq!((job.bytes, job.whose.as_str()), (8 << 30, "the job's (resources.mem)"));
        let here = Site::here(DeviceLocation::Cpu).memory.unwrap();
        assert_eq!((here.bytes, here.whose.as_str()), (crate::config::limits::machine_memory(), "this machine's"));
    }
}
