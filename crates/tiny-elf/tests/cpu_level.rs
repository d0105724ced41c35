//! The x86-64 microarchitecture level of this machine as the kernel reports it: the
//! oracle the level probe is checked against, here and in the workspace's integration
//! tests (which include this file with `#[path]`).

/// The x86-64 level of this machine from the kernel's /proc/cpuinfo flags (the
/// psABI lists in the kernel's names), independent of the probe's CPUID code.
pub fn cpu_level() -> u8 {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").expect("read /proc/cpuinfo");
    let flags: Vec<&str> = cpuinfo
        .lines()
        .find_map(|line| line.strip_prefix("flags"))
        .and_then(|rest| rest.split_once(':'))
        .map(|(_, flags)| flags.split_whitespace().collect())
        .expect("/proc/cpuinfo has a flags line");
    let all = |names: &[&str]| names.iter().all(|name| flags.contains(name));
    let v2 = all(&[
        "cx16", "lahf_lm", "popcnt", "pni", "sse4_1", "sse4_2", "ssse3",
    ]);
    let v3 = v2
        && all(&[
            "avx", "avx2", "bmi1", "bmi2", "f16c", "fma", "abm", "movbe", "xsave",
        ]);
    let v4 = v3 && all(&["avx512f", "avx512bw", "avx512cd", "avx512dq", "avx512vl"]);
    1 + u8::from(v2) + u8::from(v3) + u8::from(v4)
}
