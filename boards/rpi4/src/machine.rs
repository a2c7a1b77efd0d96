//! The entry (`Image` header, `_start`) and the board's glue to the shared Arm code.
#![allow(unsafe_code, reason = "the entry assembly")]

use core::ops::Range;
use rhea_board_common_arm::{interrupts, machine};
use rhea_hal::{IrqLine, TimeAndIrq};

pub use rhea_board_common_arm::interrupts::InitError;
pub use rhea_board_common_arm::machine::BootInfo;

/// UART0, the PL011, at 0xfe20_1000 in the BCM2711's "low peripheral" address map (BCM2711
/// ARM Peripherals §1.2.4: bus address 0x7e20_1000). The firmware sets it up when
/// `enable_uart=1`; QEMU's `raspi4b` connects its first serial port to it.
const EARLY_UART: u64 = 0xfe20_1000;
/// The peripherals (0xfc00_0000–0xff7f_ffff) and the ARM local block with the GIC-400
/// (0xff80_0000–0xffff_ffff): device memory in the boot map (BCM2711 ARM Peripherals §1.2).
const DEVICE_RANGE: Range<u64> = 0xfc00_0000..0x1_0000_0000;
/// The `Image` header's `text_offset`: where in its 2 MiB-aligned RAM window the image sits.
const TEXT_OFFSET: u64 = 0x8_0000;
/// Boot stack size (the boot context becomes CPU 0's idle thread).
const BOOT_STACK_BYTES: usize = 64 * 1024;

/// The board's services.
pub static PLATFORM: machine::ArmBoard = machine::ArmBoard::new("rpi4", EARLY_UART, DEVICE_RANGE);

core::arch::global_asm!(
    r#"
    /* Linux arm64 Image header (Documentation/arch/arm64/booting.rst §4). */
    .section .text.rhea_head, "ax"
    .global _start
_start:
    b 1f                        /* code0: jump over the header */
    .long 0                     /* code1 */
    .quad {text_offset}         /* text_offset */
    .quad __rhea_image_size     /* image_size: the whole image, .bss included */
    .quad 0x2                   /* flags: little-endian, 4 KiB pages, near the base of RAM */
    .quad 0, 0, 0               /* reserved */
    .ascii "ARM\x64"            /* magic */
    .long 0                     /* no PE/COFF header */
1:  /* x0 = devicetree, left alone. The common entry takes the boot map's device range, the
     * early UART for fatal messages and the boot stack. */
    ldr x1, ={dev_start}
    ldr x2, ={dev_end}
    ldr x3, ={uart}
    ldr x4, =rhea_boot_stack_top
    b rhea_aarch64_start
    .ltorg

    .section .bss.rhea_boot_stack, "aw", %nobits
    .balign 16
    .global rhea_boot_stack_bottom
rhea_boot_stack_bottom:
    .skip {stack}
    .global rhea_boot_stack_top
rhea_boot_stack_top:
    "#,
    text_offset = const TEXT_OFFSET,
    dev_start = const DEVICE_RANGE.start,
    dev_end = const DEVICE_RANGE.end,
    uart = const EARLY_UART,
    stack = const BOOT_STACK_BYTES,
);

/// Early board initialisation (see `rhea_board_common_arm::machine::early_init`): `arg` is the
/// devicetree's physical address from `x0`.
pub fn early_init(arg: usize) -> BootInfo {
    machine::early_init(&PLATFORM, arg)
}

/// The boot stack's `[bottom, top)`.
pub fn boot_stack() -> Range<u64> {
    machine::boot_stack()
}

/// Interrupts and time: the GIC-400, the virtual timer and counter (54 MHz on a Pi 4, as
/// `CNTFRQ_EL0` says). The counter's frequency is architectural, so there is nothing to
/// cross-check.
pub fn init_interrupts_and_time(
    boot: &BootInfo,
    _cross_check: bool,
    map_mmio: &dyn Fn(u64, u64) -> bool,
) -> Result<TimeAndIrq, InitError> {
    interrupts::init_interrupts_and_time(&PLATFORM, boot.boot_cycles, map_mmio)
}

/// The interrupt line (GIC INTID) of the console's receive interrupt.
pub fn console_rx_line() -> IrqLine {
    interrupts::console_rx_line()
}

/// Enables the console's receive interrupt (route and unmask the line first).
pub fn console_rx_enable() {
    PLATFORM.uart().enable_rx_interrupt();
}

/// Drains the console's receive FIFO into `sink` (the interrupt's top half; this acknowledges
/// it). Returns bytes read and line errors seen.
pub fn console_rx_drain(sink: impl FnMut(u8)) -> (usize, usize) {
    PLATFORM.uart().drain_rx(sink)
}
