//! Which CPU a load test ran on, and which SIMD instructions ggml (Whisper) was built to use.
//! Capacity is a property of the CPU — the same build holds very different loads on an AVX-512
//! Xeon and an AVX2-only EPYC — so every report names both next to its figures.

use std::fmt;

use serde::Serialize;

/// ggml's CPU feature names in the order of what matters most for Whisper's matrix products:
/// the first one present is the "level" a reader compares machines by.
const SIMD_LEVELS: [&str; 7] = ["AVX512", "AVX2", "AVX", "SSE3", "SVE", "NEON", "WASM_SIMD"];

#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Machine {
    /// `/proc/cpuinfo`'s model name, with family/model numbers when the name is generic
    /// (virtual machines often report just "Intel(R) Xeon(R) Processor").
    pub cpu_model: String,
    pub logical_cores: usize,
    /// The widest SIMD ggml was built with (e.g. `AVX512`), as `whisper_print_system_info` says.
    pub ggml_simd: String,
    /// Every CPU feature ggml reports as on (e.g. `AVX512_VNNI`, `F16C`, `FMA`).
    pub ggml_features: Vec<String>,
}

impl Machine {
    /// This machine and this binary's ggml. With `--url` the server is another process on the
    /// same machine; its ggml is the same if it is the same build.
    pub fn detect() -> Machine {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let features = ggml_features(whisper_rs::print_system_info());
        Machine {
            cpu_model: cpu_model(&cpuinfo).unwrap_or_else(|| "unknown CPU".into()),
            logical_cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            ggml_simd: simd_level(&features),
            ggml_features: features,
        }
    }
}

impl fmt::Display for Machine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} · {} logical cores · ggml SIMD {} ({})",
            self.cpu_model,
            self.logical_cores,
            self.ggml_simd,
            self.ggml_features.join(" ")
        )
    }
}

/// The first processor's model name, plus family and model numbers, which tell CPU
/// generations apart when the name does not (family 6 model 143 is Sapphire Rapids).
fn cpu_model(cpuinfo: &str) -> Option<String> {
    let field = |key: &str| {
        cpuinfo.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            (k.trim() == key).then(|| v.trim().to_string())
        })
    };
    let name = field("model name")?;
    Some(match (field("cpu family"), field("model")) {
        (Some(family), Some(model)) => format!("{name} (family {family} model {model})"),
        _ => name,
    })
}

/// The features set to 1 in the `CPU :` part of `whisper_print_system_info`'s
/// `"WHISPER : COREML = 0 | ... | CPU : SSE3 = 1 | AVX = 1 | ... |"`.
fn ggml_features(info: &str) -> Vec<String> {
    let Some((_, cpu)) = info.split_once("CPU :") else {
        return Vec::new();
    };
    cpu.split('|')
        .filter_map(|item| {
            let (name, on) = item.split_once('=')?;
            (on.trim() == "1").then(|| name.trim().to_string())
        })
        .filter(|name| !name.is_empty())
        .collect()
}

fn simd_level(features: &[String]) -> String {
    SIMD_LEVELS
        .iter()
        .find(|level| features.iter().any(|f| f == *level))
        .map_or_else(|| "none reported".into(), |l| l.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ggml_features_are_the_cpu_flags_that_are_on() {
        let info = "WHISPER : COREML = 0 | OPENVINO = 0 | CPU : SSE3 = 1 | SSSE3 = 1 | AVX = 1 | AVX2 = 1 | F16C = 1 | FMA = 1 | BMI2 = 1 | AVX512 = 1 | AVX512_VBMI = 0 | AVX512_VNNI = 1 | OPENMP = 1 | REPACK = 1 | ";
        let f = ggml_features(info);
        assert_eq!(
            f,
            [
                "SSE3",
                "SSSE3",
                "AVX",
                "AVX2",
                "F16C",
                "FMA",
                "BMI2",
                "AVX512",
                "AVX512_VNNI",
                "OPENMP",
                "REPACK"
            ]
        );
        assert_eq!(simd_level(&f), "AVX512");
        let avx2: Vec<String> = ["SSE3", "AVX", "AVX2", "FMA"].map(String::from).into();
        assert_eq!(simd_level(&avx2), "AVX2");
        assert!(ggml_features("WHISPER : COREML = 1 |").is_empty());
        assert_eq!(simd_level(&[]), "none reported");
    }

    #[test]
    fn cpu_model_names_family_and_model() {
        let info = "processor\t: 0\nvendor_id\t: GenuineIntel\ncpu family\t: 6\nmodel\t\t: 143\nmodel name\t: Intel(R) Xeon(R) Processor\n";
        assert_eq!(
            cpu_model(info).as_deref(),
            Some("Intel(R) Xeon(R) Processor (family 6 model 143)")
        );
        assert_eq!(
            cpu_model("model name : AMD EPYC 9R14\n").as_deref(),
            Some("AMD EPYC 9R14")
        );
        assert_eq!(cpu_model(""), None);
    }
}
