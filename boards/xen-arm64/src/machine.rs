//! The entry (`Image` header, `_start`) and the board's glue to the shared Arm code, generated
//! by `rhea_board_common_arm::arm_board!`, with Xen's console and exit as the board's services
//! and Xen's event channels as its interrupt layer over the GIC (`events.rs`).
#![allow(unsafe_code, reason = "the entry assembly")]

use crate::hypercall;
use core::fmt::Write;
use rhea_board_common_arm::fdt::Fdt;
use rhea_board_common_arm::machine::HostedServices;
use rhea_board_common_arm::platform::node_interrupt;
use rhea_hal::ExitStatus;

rhea_board_common_arm::arm_board! {
    board_type: XenArm64,
    name: "xen-arm64",
    // Xen's emulated SBSA UART (`GUEST_PL011_BASE`, public/arch-arm.h): the entry code's fixed
    // messages only; the console proper is `console_io`.
    early_uart: 0x2200_0000,
    // Below the guest's RAM (`GUEST_RAM0_BASE`, 1 GiB): the emulated GIC, the vpl011, the
    // grant-table and other windows of Xen's guest memory map — device memory in the boot map.
    device_range: 0..0x4000_0000,
    text_offset: 0x8_0000,
    boot_stack_bytes: 64 * 1024,
    services: HostedServices {
        write: hypercall::console_write,
        exit,
        check: check_devicetree,
        console_name: "Xen HYPERVISOR_console_io",
        exit_name: "Xen SCHEDOP_shutdown",
    },
    // Event channels over the GIC: IPIs and Xen's device ports (events.rs).
    interrupt_layer: crate::events::LAYER,
    // The toolstack's magic pages (xenstore and console rings): mapped like RAM, the way the
    // other side maps them.
    shared_memory: rhea_board_xen_common::abi::arm::GUEST_MAGIC,
    // Xenbus with netfront when xenstore is there (a domU a toolstack created).
    buses: rhea_board_xen_common::pv::buses,
    net_drivers: rhea_board_xen_common::pv::net_drivers,
    // Steal time: each vCPU's runstate area (events.rs registers it).
    stolen_ns: |cpu| rhea_board_xen_common::steal::RUNSTATE.stolen_ns(cpu),
}

/// Checks that Rhea runs under Xen and reports the hypervisor: `XENVER_version` must answer
/// with a version (elsewhere `hvc #0xEA1` is no hypercall), and the devicetree's `hypervisor`
/// node (compatible `xen,xen`: grant table, event-channel interrupt) is reported when present.
/// Xen adds that node only for domains with its PV interfaces, which a dom0less domU of Xen
/// 4.17 gets only with xenstore, hence with a dom0 (`xen,enhanced`): so its absence is
/// reported, not refused, and the event channels then use `GUEST_EVTCHN_PPI` (31), the PPI Xen
/// gives every domain. A node whose `interrupts` is malformed or not a PPI is refused.
fn check_devicetree(tree: &Fdt<'_>) -> Result<(), &'static str> {
    let Some((major, minor)) = hypercall::xen_version().filter(|(major, _)| *major >= 3) else {
        return Err(
            "XENVER_version gave no Xen version: not a Xen guest (xen-arm64 images boot \
             under Xen: cargo xtask run --board xen-arm64)",
        );
    };
    let mut out = hypercall::Console;
    let _ = write!(out, "rhea: xen: Xen {major}.{minor}; devicetree: ");
    match tree.find_compatible(&["xen,xen"]) {
        Some(node) => {
            let _ = write!(out, "/{}", node.name());
            for c in node.compatible() {
                let _ = write!(out, " {c}");
            }
            match node_interrupt(&node, 0) {
                Ok(irq) if (16..32).contains(&irq.intid) => {
                    crate::events::set_devicetree_intid(irq.intid);
                    let _ = write!(out, ", event channels on INTID {}", irq.intid);
                }
                Ok(_) => {
                    return Err("the hypervisor node's event-channel interrupt is not a PPI");
                }
                Err(_) => {
                    return Err("the hypervisor node's 'interrupts' is missing or malformed");
                }
            }
        }
        None => {
            let _ = write!(
                out,
                "no hypervisor node (no PV interfaces: dom0less without xenstore)"
            );
        }
    }
    let _ = writeln!(out, "; console: console_io, exit: SCHEDOP_shutdown");
    Ok(())
}

/// Ends the run: `SCHEDOP_shutdown` with `SHUTDOWN_poweroff` for success and `SHUTDOWN_crash`
/// for failure (see [`hypercall::shutdown`]).
fn exit(status: ExitStatus) -> ! {
    let reason = match status {
        ExitStatus::Success => hypercall::ShutdownReason::Poweroff,
        ExitStatus::Failure => hypercall::ShutdownReason::Crash,
    };
    hypercall::shutdown(reason)
}
