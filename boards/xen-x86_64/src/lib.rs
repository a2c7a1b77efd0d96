//! # `rhea-board-xen-x86_64` — an x86_64 PVH guest of the Xen hypervisor
//!
//! Layer 5: the only crate that names Xen's facts on x86_64. Rhea runs as a PVH domain —
//! the hardware domain (`dom0=pvh`, how Xen's own CI runs test kernels: no toolstack, seconds
//! to boot) or a domU that a dom0's toolstack creates (`type = "pvh"`). Both enter the same way:
//! - **boot**: the PVH ELF note and 32-bit entry of `rhea-board-common-x86` (QEMU and Xen
//!   speak the same PVH protocol), whose `hvm_start_info` parser this board reuses
//!   ([`rhea_board_common_x86::pvh_boot`]); same linker script;
//! - **hypercalls** (`hypercall.rs`): Xen's CPUID leaves (0x4000_0000 + n·0x100, signature
//!   `XenVMMXenVMM`) give the MSR that makes Xen fill a hypercall page in the image; calls go
//!   through its 32-byte stubs;
//! - **shared info** (`interrupts.rs`): a page of the image handed to Xen with
//!   `XENMEM_add_to_physmap`; it holds every vCPU's `vcpu_info` (clock, upcall flags) and the
//!   event-channel bitmaps (`rhea-board-xen-common`);
//! - **interrupts**: event channels are the interrupt controller. Upcalls arrive as one vector
//!   ([`rhea_irq::vectors::XEN_UPCALL`], `HVM_PARAM_CALLBACK_IRQ` of the vector type: no LAPIC,
//!   no EOI); the controller's `demux` turns them into the vectors of the pending ports:
//!   `VIRQ_TIMER` per vCPU → the timer vector, one IPI port per vCPU carrying reschedule and
//!   call IPIs and self-raised vectors, device ports as routed;
//! - **time**: the Xen clock from `vcpu_time_info` (version-checked snapshot, TSC scaling) is
//!   the clock source, `VCPUOP_set_singleshot_timer` the one-shot timer (tickless; the periodic
//!   timer is stopped);
//! - **vCPUs** (`smp.rs`): counted with `VCPUOP_is_up`, started with `VCPUOP_initialise` in
//!   64-bit mode (the kernel's page tables, stack, per-CPU block) and `VCPUOP_up`;
//! - **console**: early output through `HYPERVISOR_console_io` when Xen allows it (the
//!   hardware domain, which keeps it), else the debug port 0xE9 (any HVM guest; Xen prints
//!   `(dN)`-prefixed lines with `guest_loglvl=all`); a domU then switches to its PV console
//!   ring (`rhea_board_xen_common::pv`). Console input: the ring's input (domU), `VIRQ_CONSOLE` + `CONSOLEIO_read`
//!   (hardware domain);
//! - **PV devices** (`rhea_board_xen_common::pv`, over this board's hypercalls): grant table, xenstore, Xenbus with netfront
//!   (`rhea_drivers::xen`) for a domU a toolstack created;
//! - **exit**: `SCHEDOP_shutdown` (poweroff = success, crash = failure), announced first.
//!
//! Trap on this setup (QEMU TCG running Xen with nested SVM): CR2 reads 0 inside the guest
//! after a page fault, so page-fault reports here show RIP and the error code, not the
//! address; memory is mapped up front, so no fault is part of normal operation.
#![cfg_attr(not(test), no_std)]
#![deny(unsafe_code)]

#[cfg(target_os = "none")]
extern crate alloc;

#[cfg(target_os = "none")]
mod hypercall;
#[cfg(target_os = "none")]
mod interrupts;
#[cfg(target_os = "none")]
mod machine;
#[cfg(target_os = "none")]
mod smp;
#[cfg(target_os = "none")]
pub use machine::*;
