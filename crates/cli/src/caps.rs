//! `tether caps`: the external fence and semaphore capabilities of every physical device, as
//! the `tether` crate's typed query ([`tether::DeviceCaps`]) answers and prints them.

use tether::{DeviceCaps, Instance};

use crate::vulkan::{self, Choice, Vulkan};

/// The devices one entry sees.
fn query_entry(vulkan: &Vulkan) -> Result<Vec<DeviceCaps>, String> {
    let instance = Instance::new(vulkan.entry.clone(), c"tether caps").map_err(|e| e.to_string())?;
    let devices = instance.physical_devices().map_err(|e| e.to_string())?;
    Ok(devices.iter().map(|d| d.capabilities().clone()).collect())
}

fn print_devices(devices: &[DeviceCaps]) {
    say!(
        "{} physical device{}. For each object kind and external handle type: export/import = the \
         EXPORTABLE/IMPORTABLE features, compatible = compatibleHandleTypes, export from imported = \
         exportFromImportedHandleTypes\n(FD = OPAQUE_FD, WIN32 = OPAQUE_WIN32, KMT = OPAQUE_WIN32_KMT, \
         D3D12 = D3D12_FENCE, SYNC = SYNC_FD).\n",
        devices.len(),
        if devices.len() == 1 { "" } else { "s" }
    );
    for caps in devices {
        say!("{caps}");
    }
}

pub fn run(choice: Choice) -> Result<(), String> {
    let vulkan = Vulkan::open(choice)?;
    let from_loader = match query_entry(&vulkan) {
        Ok(devices) => {
            say!("Vulkan from {}", vulkan.describe());
            print_devices(&devices);
            devices
        }
        Err(e) if choice == Choice::Auto && vulkan.source == vulkan::Source::Loader => {
            vulkan::notice(&format!("the Vulkan loader found no usable driver ({e})"));
            Vec::new()
        }
        Err(e) => return Err(e),
    };
    if from_loader
        .iter()
        .any(|d| d.name == tether_icd::objects::physical_device::DEVICE_NAME)
        || vulkan.source == vulkan::Source::Embedded
    {
        return Ok(());
    }
    if choice == Choice::Loader {
        say!(
            "no tether device: build it (`cargo build --release`), point the loader at \
             manifests/tether_icd.json, or pass --embedded"
        );
        return Ok(());
    }
    let embedded = Vulkan::embedded();
    say!("the loader sees no tether device; Vulkan from {}:", embedded.describe());
    print_devices(&query_entry(&embedded)?);
    Ok(())
}
