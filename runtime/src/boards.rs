//! The board, as `rhea-board` (`boards/select`) selects it from the build's `rhea_board` cfg.
//!
//! Every board crate exports the same items, which the boot sequence uses (the compiler checks
//! their types where they are used):
//! - `early_init(arg) -> BootInfo`: console, CPU tables, the validated memory map;
//! - `BootInfo { memory_map, cmdline, image, reserved, boot_cycles }`;
//! - `boot_stack() -> Range<u64>`: the stack the boot (later idle) context runs on;
//! - `init_interrupts_and_time(&BootInfo, cross_check, map_mmio) -> Result<TimeAndIrq, E>`;
//! - `console_rx_line()`, `console_rx_enable()`, `console_rx_drain(sink)`: console input;
//!   `console_rx_readers(n)`: how many threads now wait for it (LinuxU's simulation mode
//!   counts console input as a source that can end a wait only while someone waits for it);
//! - `buses() -> Vec<Box<dyn Bus>>`: the buses to enumerate (`rhea_drivers::bus`);
//! - `net_drivers() -> Vec<&'static dyn Driver>`: the NIC drivers to offer their devices to,
//!   called (hence linked) only with the runtime's `net` feature;
//! - `msi_message(vector) -> Option<(address, data)>`: a message-signalled interrupt raising
//!   `vector` on the boot CPU, where the machine has them;
//! - `PLATFORM`: a `rhea_hal::Platform`.

pub(crate) use rhea_board as board;
