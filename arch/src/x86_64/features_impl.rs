//! The CPU feature report printed at boot, from CPUID through `raw-cpuid`.
//!
//! These are the facts later layers branch on: TSC-deadline and x2APIC select the timer and
//! interrupt-controller modes, invariant TSC and the frequency leaves decide how the clock is
//! calibrated, XSAVE decides how FPU state is switched, and the hypervisor vendor names the
//! paravirtual interfaces on offer (KVM clock, Xen).

use core::fmt;
use raw_cpuid::{CpuId, Hypervisor};

/// What this CPU offers.
#[derive(Clone, Copy, Debug, Default)]
pub struct Features {
    /// `GenuineIntel`, `AuthenticAMD`, ... (12 bytes, NUL-padded).
    pub vendor: [u8; 12],
    /// LAPIC timer TSC-deadline mode (CPUID.01H:ECX[24]).
    pub tsc_deadline: bool,
    /// x2APIC (CPUID.01H:ECX[21]).
    pub x2apic: bool,
    /// XSAVE family (CPUID.01H:ECX[26]).
    pub xsave: bool,
    /// AVX (CPUID.01H:ECX[28]).
    pub avx: bool,
    /// Invariant TSC (CPUID.80000007H:EDX[8]).
    pub invariant_tsc: bool,
    /// Execute-disable (CPUID.80000001H:EDX[20]).
    pub nx: bool,
    /// 1 GiB pages (CPUID.80000001H:EDX[26]).
    pub page_1gib: bool,
    /// The hypervisor's name when CPUID.01H:ECX[31] says one is present.
    pub hypervisor: Option<&'static str>,
    /// KVM's paravirtual features (CPUID 0x40000001 EAX: kvmclock, steal time, ...) when the
    /// hypervisor is KVM; 0 otherwise.
    pub kvm_features: u32,
    /// TSC frequency and where it came from, when CPUID states it.
    pub tsc_hz: Option<(u64, &'static str)>,
    /// This CPU's initial APIC ID: the 32-bit x2APIC ID (CPUID.0BH:EDX) where the leaf
    /// exists, else the 8-bit one (CPUID.01H:EBX[31:24]).
    pub apic_id: u32,
}

impl Features {
    fn vendor_str(&self) -> &str {
        let end = self.vendor.iter().position(|&b| b == 0).unwrap_or(12);
        core::str::from_utf8(&self.vendor[..end]).unwrap_or("?")
    }
}

/// Reads the features of the CPU this runs on.
pub fn report() -> Features {
    let cpuid = CpuId::new();
    let mut f = Features::default();
    if let Some(v) = cpuid.get_vendor_info() {
        let s = v.as_str().as_bytes();
        let n = s.len().min(12);
        f.vendor[..n].copy_from_slice(&s[..n]);
    }
    if let Some(fi) = cpuid.get_feature_info() {
        f.apic_id = u32::from(fi.initial_local_apic_id());
        f.tsc_deadline = fi.has_tsc_deadline();
        f.x2apic = fi.has_x2apic();
        f.xsave = fi.has_xsave();
        f.avx = fi.has_avx();
        if fi.has_hypervisor() {
            f.hypervisor = Some(match cpuid.get_hypervisor_info().map(|h| h.identify()) {
                Some(Hypervisor::KVM) => {
                    // The leaf after KVM's signature leaf: its paravirtual feature bits.
                    f.kvm_features = raw_cpuid::cpuid!(0x4000_0001).eax;
                    "KVM"
                }
                Some(Hypervisor::Xen) => "Xen",
                Some(Hypervisor::QEMU) => "QEMU TCG",
                Some(Hypervisor::HyperV) => "Hyper-V",
                Some(Hypervisor::VMware) => "VMware",
                Some(Hypervisor::Bhyve) => "bhyve",
                Some(_) | None => "unknown",
            });
        }
    }
    if let Some(x2apic_id) = cpuid
        .get_extended_topology_info()
        .and_then(|mut levels| levels.next())
        .map(|level| level.x2apic_id())
    {
        f.apic_id = x2apic_id;
    }
    if let Some(pm) = cpuid.get_advanced_power_mgmt_info() {
        f.invariant_tsc = pm.has_invariant_tsc();
    }
    if let Some(ext) = cpuid.get_extended_processor_and_feature_identifiers() {
        f.nx = ext.has_execute_disable();
        f.page_1gib = ext.has_1gib_pages();
    }
    // Frequency: the hypervisor timing leaf (0x40000010, kHz) is what KVM and QEMU fill;
    // then the crystal-clock leaf 0x15; then the nominal base frequency of 0x16 (MHz).
    f.tsc_hz = cpuid
        .get_hypervisor_info()
        .and_then(|h| h.tsc_frequency())
        .filter(|&khz| khz != 0)
        .map(|khz| (u64::from(khz) * 1000, "cpuid 0x40000010"))
        .or_else(|| {
            cpuid
                .get_tsc_info()
                .and_then(|t| t.tsc_frequency())
                .map(|hz| (hz, "cpuid 0x15"))
        })
        .or_else(|| {
            cpuid
                .get_processor_frequency_info()
                .map(|p| u64::from(p.processor_base_frequency()))
                .filter(|&mhz| mhz != 0)
                .map(|mhz| (mhz * 1_000_000, "cpuid 0x16"))
        });
    f
}

impl fmt::Display for Features {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let yn = |b: bool| if b { "yes" } else { "no" };
        write!(
            f,
            "{} hypervisor={} tsc-deadline={} x2apic={} invariant-tsc={} xsave={} avx={} nx={} 1g-pages={} tsc=",
            self.vendor_str(),
            self.hypervisor.unwrap_or("none"),
            yn(self.tsc_deadline),
            yn(self.x2apic),
            yn(self.invariant_tsc),
            yn(self.xsave),
            yn(self.avx),
            yn(self.nx),
            yn(self.page_1gib),
        )?;
        match self.tsc_hz {
            Some((hz, from)) => write!(f, "{} kHz ({from})", hz / 1000)?,
            None => f.write_str("unknown (no CPUID frequency leaf)")?,
        }
        if self.hypervisor == Some("KVM") {
            write!(f, " kvm-features={:#x}", self.kvm_features)?;
        }
        Ok(())
    }
}
