//! `fdt`: a devicetree blob as a loader hands it over (the input is the blob), through what
//! the Arm boards' early init does with it (`boards/common-arm/src/machine.rs`): the header's
//! `totalsize` read first, the validating [`Fdt::new`], the platform facts
//! ([`ArmPlatform::from_fdt_with`], with and without a PL011), the virtio-mmio transports, the
//! CPU numbering and `rhea.cpus=` of the SMP plan, xen-arm64's hypervisor-node interrupt —
//! and every accessor on every node. Invariant: errors, never a panic or a read outside the
//! blob.

use rhea_board_common_arm::fdt::{self, Fdt, read_cells};
use rhea_board_common_arm::platform::{
    ArmPlatform, cpus_from_cmdline, node_interrupt, virtio_mmio,
};

/// Runs one input.
pub fn run(blob: &[u8]) {
    // What `read_devicetree` does: only `totalsize` bytes are looked at after the header.
    let Ok(total) = fdt::total_size(blob) else {
        let _ = Fdt::new(blob);
        return;
    };
    let Some(blob) = blob.get(..total) else {
        let _ = Fdt::new(blob);
        return;
    };
    let Ok(tree) = Fdt::new(blob) else {
        return;
    };
    let _ = tree.total_size();
    for (base, size) in tree.memory_reservations() {
        let _ = base.checked_add(size);
    }
    for want_uart in [true, false] {
        if let Ok(p) = ArmPlatform::from_fdt_with(&tree, want_uart) {
            let _ = p.memory_map.usable().count();
            let _ = cpus_from_cmdline(p.bootargs);
            let first = p.cpus.as_slice().first().map_or(0, |c| c.mpidr);
            for boot in [0, first, u64::MAX] {
                let _ = p.cpus.numbered(boot).count();
                let _ = p.cpus.count(boot);
            }
        }
    }
    for t in virtio_mmio(&tree).flatten() {
        let _ = t.unsupported();
    }
    // xen-arm64's `check_devicetree`.
    if let Some(node) = tree.find_compatible(&["xen,xen"]) {
        let _ = node_interrupt(&node, 0);
    }
    for path in [
        "/",
        "/cpus",
        "/chosen",
        "/psci",
        "/soc",
        "/memory",
        "/reserved-memory",
    ] {
        let _ = tree.find_path(path);
    }
    let root = tree.root();
    let _ = root.children().count();
    for node in tree.nodes() {
        let _ = node.name();
        let _ = node.parent().map(|p| (p.address_cells(), p.size_cells()));
        let _ = node.children().count();
        let _ = node.compatible().count();
        let _ = node.is_enabled();
        let _ = node.property_str("status");
        let _ = node.property_str("compatible");
        if let Some(phandle) = node.property_u32("phandle") {
            let _ = tree.find_phandle(phandle);
        }
        if let Some(reg) = node.property("reg") {
            for i in 0..4 {
                for cells in 0..3 {
                    let _ = read_cells(reg, i, cells);
                }
            }
        }
        for i in 0..4 {
            let _ = node_interrupt(&node, i);
        }
    }
}
