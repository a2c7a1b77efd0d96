//! [`arm_board!`]: the `Image` header, the entry stub and the glue to this crate that every Arm
//! board crate needs, from the board's facts. A macro because the entry assembly must be
//! emitted in the board crate with the board's constants.

/// Defines, in the calling board crate: `PLATFORM`, the Linux arm64 `Image` header and
/// `_start` (which passes the devicetree in `x0` and the board's facts to
/// `rhea_aarch64_start`), the boot stack, and the board type `board_type`, which implements
/// `rhea_hal::Board` and `rhea_drivers::bus::BoardDevices` over this crate.
///
/// `name`: the board's name; `early_uart`: the PL011's address for fatal messages before the
/// devicetree is read; `device_range`: device memory in the boot map; `text_offset`: the
/// `Image` header's offset of the image in its 2 MiB-aligned window; `boot_stack_bytes`: the
/// boot stack, which becomes CPU 0's idle thread; `services` (optional): the board's own
/// console and exit ([`crate::machine::HostedServices`]) instead of the PL011 and
/// semihosting/PSCI; `interrupt_layer` (optional): the board's own interrupt controller over
/// the GIC ([`crate::machine::InterruptLayer`]); `shared_memory` (optional): memory outside
/// RAM shared with the hypervisor, mapped like RAM; `buses` and `net_drivers` (optional,
/// `fn() -> Vec<…>`): the board's own buses and NIC drivers besides the devicetree's (the
/// drivers are linked only when the runtime calls `net_drivers`: its `net` feature);
/// `stolen_ns` (optional, `fn(usize) -> Option<u64>`): the hypervisor's steal time per CPU
/// (`rhea_hal::Board::stolen_ns`).
#[macro_export]
macro_rules! arm_board {
    (
        board_type: $ty:ident,
        name: $name:expr,
        early_uart: $uart:expr,
        device_range: $range:expr,
        text_offset: $text_offset:expr,
        boot_stack_bytes: $stack:expr
        $(, services: $services:expr)?
        $(, interrupt_layer: $layer:expr)?
        $(, shared_memory: $shared:expr)?
        $(, buses: $buses:expr)?
        $(, net_drivers: $net_drivers:expr)?
        $(, stolen_ns: $stolen:expr)? $(,)?
    ) => {
        const EARLY_UART: u64 = $uart;
        const DEVICE_RANGE: core::ops::Range<u64> = $range;
        const TEXT_OFFSET: u64 = $text_offset;
        const BOOT_STACK_BYTES: usize = $stack;

        pub use $crate::interrupts::InitError;

        /// The board's services.
        pub static PLATFORM: $crate::machine::ArmBoard =
            $crate::machine::ArmBoard::new($name, EARLY_UART, DEVICE_RANGE)
                $(.with_services($services))?
                $(.with_interrupt_layer($layer))?
                $(.with_shared_memory($shared))?;

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

        /// This board, for the runtime: the board contract over the shared Arm code.
        #[derive(Debug)]
        pub enum $ty {}

        impl $crate::__hal::Board for $ty {
            type Platform = $crate::machine::ArmBoard;
            type InitError = $crate::interrupts::InitError;

            fn platform() -> &'static $crate::machine::ArmBoard {
                &PLATFORM
            }

            /// `arg` is the devicetree's physical address from `x0` (see
            /// `rhea_board_common_arm::machine::early_init`).
            fn early_init(arg: usize) -> $crate::__hal::BootInfo {
                $crate::machine::early_init(&PLATFORM, arg)
            }

            fn boot_stack() -> core::ops::Range<u64> {
                $crate::machine::boot_stack()
            }

            /// The GIC the devicetree names (and the board's interrupt layer over it, if any),
            /// the virtual timer and counter. The counter's frequency is architectural
            /// (`CNTFRQ_EL0`), so there is nothing to cross-check.
            fn init_interrupts_and_time(
                boot: &$crate::__hal::BootInfo,
                _cross_check: bool,
                map_mmio: &dyn Fn(u64, u64) -> bool,
            ) -> Result<$crate::__hal::TimeAndIrq, InitError> {
                $crate::interrupts::init_interrupts_and_time(&PLATFORM, boot.boot_cycles, map_mmio)
            }

            /// The GIC INTID of the console's receive interrupt, as the board numbers GIC lines.
            fn console_rx_line() -> $crate::__hal::IrqLine {
                $crate::interrupts::console_rx_line()
            }

            fn console_rx_enable() {
                $crate::machine::console_rx_enable(&PLATFORM);
            }

            fn console_rx_drain(max: usize, sink: &mut dyn FnMut(u8)) -> (usize, usize) {
                $crate::machine::console_rx_drain(&PLATFORM, max, sink)
            }

            fn msi_message(vector: u8) -> Option<(u64, u32)> {
                $crate::devices::msi_message(vector)
            }

            $(
                fn stolen_ns(cpu: usize) -> Option<u64> {
                    ($stolen)(cpu)
                }
            )?
        }

        impl $crate::__drivers::bus::BoardDevices for $ty {
            /// The devicetree's buses, then the board's.
            fn buses() -> $crate::devices::Buses {
                #[allow(unused_mut, reason = "only boards with their own buses add to it")]
                let mut buses = $crate::devices::buses();
                $(buses.extend(($buses)());)?
                buses
            }

            /// The devicetree's NIC drivers, then the board's.
            fn net_drivers() -> $crate::devices::Drivers {
                #[allow(unused_mut, reason = "only boards with their own drivers add to it")]
                let mut drivers = $crate::devices::net_drivers();
                $(drivers.extend(($net_drivers)());)?
                drivers
            }

            /// virtio-9p over the devicetree's virtio-mmio transports.
            fn blk_drivers() -> $crate::devices::Drivers {
                $crate::devices::blk_drivers()
            }
            fn p9_drivers() -> $crate::devices::Drivers {
                $crate::devices::p9_drivers()
            }
        }
    };
}
