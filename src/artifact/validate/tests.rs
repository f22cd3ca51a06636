use std::path::Path;

use super::files::utf8_text;
use super::*;
use crate::artifact::labels::TagSets;
use crate::artifact::PermutationsMeta;
use crate::artifact::{Features, FeaturesMeta, Labels, LabelsMeta, Permutations};

fn labels_dir(num_classes: usize, class_names: Vec<String>) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let meta = LabelsMeta { num_classes, class_names, source: "test".into(), tag_classes: vec![] };
    Labels { meta, train: vec![0, 1, 2], test: vec![3], tags: None }.save(dir.path()).unwrap();
    dir
}

/// Labels from k-means carry their centroids: copied through by a `command` stage they are
/// accepted, when F32 and finite; any other extra file is still refused, naming what may be.
#[test]
fn labels_may_carry_their_centroids() {
    let dir = labels_dir(4, vec![]);
    let centroids = dir.path().join("centroids.safetensors");
    crate::artifact::tensors::save_matrix(&centroids, "centroids", &[0.5, 1.0, -2.0, 0.0], 2, 2).unwrap();
    validate(dir.path(), Kind::Labels, Some((3, 1))).unwrap();
    crate::artifact::tensors::save_matrix(&centroids, "centroids", &[0.5, f32::NAN, -2.0, 0.0], 2, 2).unwrap();
    let e = validate(dir.path(), Kind::Labels, None).unwrap_err().to_string();
    assert!(e.contains("centroids.safetensors") && e.contains("NaN"), "{e}");
    // Past the first block of the check, which reads the file a block at a time.
    let mut values = vec![0.25f32; 600_000];
    values[599_999] = f32::INFINITY;
    crate::artifact::tensors::save_matrix(&centroids, "centroids", &values, 1000, 600).unwrap();
    let e = validate(dir.path(), Kind::Labels, None).unwrap_err().to_string();
    assert!(e.contains("tensor `centroids` holds NaN or infinite values"), "{e}");
    values[599_999] = 0.0;
    crate::artifact::tensors::save_matrix(&centroids, "centroids", &values, 1000, 600).unwrap();
    validate(dir.path(), Kind::Labels, None).unwrap();
    std::fs::remove_file(&centroids).unwrap();
    std::fs::write(dir.path().join("notes.txt"), "x").unwrap();
    let e = validate(dir.path(), Kind::Labels, None).unwrap_err().to_string();
    assert!(e.contains("notes.txt") && e.contains("may hold centroids.safetensors only"), "{e}");
}

/// A tensor file larger than half the machine's memory is refused before any of it is read
/// (a sparse file: instant to make, as a command could).
#[test]
fn a_tensor_file_too_large_to_read_whole_is_refused() {
    let dir = labels_dir(4, vec![]);
    let file = std::fs::OpenOptions::new().write(true).open(dir.path().join("labels.safetensors")).unwrap();
    file.set_len(crate::config::limits::machine_memory() / 2 + 1).unwrap();
    let e = validate(dir.path(), Kind::Labels, None).unwrap_err().to_string();
    assert!(e.starts_with("labels.safetensors: is ") && e.contains("more than half of this machine's"), "{e}");
}

/// A command's metrics.json is read without guessing: a name given twice, a misspelt field,
/// a name that would act on a terminal and a file too large to read whole are each refused
/// with what is wrong; an ordinary file passes.
#[test]
fn metrics_written_by_a_command_are_read_strictly() {
    let check = |text: &str| {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("metrics.json"), text).unwrap();
        validate(dir.path(), Kind::Metrics, None).map_err(|e| e.to_string())
    };
    check(r#"{"values": {"top1": 81.2, "loss": 0.5}, "details": {"curve": [1, 2]}}"#).unwrap();
    let e = check(r#"{"values": {"top1": 1, "top1": 2}, "details": {}}"#).unwrap_err();
    assert!(e.contains("`$.values.top1` is given twice"), "{e}");
    let e = check(r#"{"values": {"top1": 1}, "detials": {}}"#).unwrap_err();
    assert!(e.contains("unknown field \"detials\"; a metrics file holds `values` and `details`"), "{e}");
    for bad in ["NaN", "Infinity", "-Infinity"] {
        let e = check(&format!("{{\"values\": {{\"x\": {bad}}}}}")).unwrap_err();
        assert!(e.contains("JSON has no NaN or Infinity"), "{bad}: {e}");
    }
    let e = check(r#"{"values": {"x": nope}}"#).unwrap_err();
    assert!(!e.contains("NaN"), "{e}");
    let e = check("{\"values\": {\"a\\u001b]0;x\": 1}}").unwrap_err();
    assert!(e.contains(r#"value name "a\u{1b}]0;x" is empty or holds a control character"#), "{e}");
    let e = check(r#"{"values": {"": 1}}"#).unwrap_err();
    assert!(e.contains("value name \"\" is empty"), "{e}");

    let dir = tempfile::tempdir().unwrap();
    let f = std::fs::File::create(dir.path().join("metrics.json")).unwrap();
    f.set_len(MAX_JSON_BYTES + 1).unwrap();
    let e = validate(dir.path(), Kind::Metrics, None).unwrap_err().to_string();
    assert!(e.contains("is 67108865 bytes; a JSON file of an artifact may be at most 67108864 bytes (64 MiB)"), "{e}");
}

/// A report's file names reach the terminal and the page: one with an escape sequence, a
/// character that reorders text or bytes that are not UTF-8 is refused (an audit's escape
/// retitled the terminal after a run), an ordinary one with spaces and accents is not.
#[test]
fn report_file_names_that_would_act_instead_of_show_are_refused() {
    use std::os::unix::ffi::OsStrExt;
    let bad: [&[u8]; 4] = [b"\x1b]0;title\x07.txt", "\u{202e}txt.md".as_bytes(), b"a\nb.md", b"\xff\xfe.md"];
    for name in bad {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(std::ffi::OsStr::from_bytes(name)), "x").unwrap();
        let e = validate(dir.path(), Kind::Report, None).unwrap_err();
        assert!(e.why.contains("in its name") || e.why.contains("not UTF-8"), "{name:?}: {e:?}");
        assert!(!e.file.contains('\x1b') && !e.file.contains('\n'), "{:?}", e.file);
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("résumé table.md"), "x").unwrap();
    validate(dir.path(), Kind::Report, None).unwrap();
}

/// UTF-8 is checked a block at a time: a character cut by a block's end is still text,
/// a bad byte anywhere is not.
#[test]
fn utf8_is_checked_across_block_ends() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.txt");
    let mut text = "a".repeat((1 << 16) - 1).into_bytes();
    text.extend("é€😀".repeat(30_000).as_bytes());
    std::fs::write(&path, &text).unwrap();
    assert!(utf8_text(&path).unwrap());
    text.push(0xc3); // a character cut by the end of the file
    std::fs::write(&path, &text).unwrap();
    assert!(!utf8_text(&path).unwrap());
    text.pop();
    text[100_000] = 0xff;
    std::fs::write(&path, &text).unwrap();
    assert!(!utf8_text(&path).unwrap());
}

/// A command's labels that declare absurdly many classes, or names that do not fit them,
/// are refused where they are checked; before, 2^31 classes passed and a probe downstream
/// aborted the whole run allocating for them.
#[test]
fn class_counts_out_of_bounds_and_misfit_names_are_refused() {
    assert!(validate(labels_dir(4, vec![]).path(), Kind::Labels, None).is_ok());
    let huge = validate(labels_dir(1 << 31, vec![]).path(), Kind::Labels, None).unwrap_err();
    assert!(huge.to_string().contains("`num_classes` is 2147483648; it must be from 1 to 1000000"), "{huge}");
    let names = validate(labels_dir(4, vec!["a".into()]).path(), Kind::Labels, None).unwrap_err();
    assert!(names.to_string().contains("`class_names` has 1 names for 4 classes"), "{names}");
}

/// With no rows, a file of a few bytes could declare any size of example, and a consumer
/// allocated per channel (a 2 KiB histogram each) before it read a pixel: 2^36 channels aborted.
#[test]
fn images_declaring_sizes_no_consumer_can_hold_are_refused() {
    let check = |channels: usize, frames: usize, side: usize| {
        let dir = tempfile::tempdir().unwrap();
        let meta = crate::artifact::ImagesMeta {
            dataset: "test".into(),
            channels,
            height: side,
            width: side,
            num_classes: 2,
            class_names: vec![],
            hflip_ok: true,
            frames,
        };
        crate::artifact::Images { meta, train: vec![], test: vec![] }.save(dir.path()).unwrap();
        let kind = if frames > 1 { Kind::Clips } else { Kind::Images };
        validate(dir.path(), kind, None).map_err(|e| e.to_string())
    };
    assert!(check(4096, 1, 8).is_ok());
    let e = check(1 << 36, 1, 8).unwrap_err();
    assert!(e.contains("`channels` is 68719476736; at most 4096 are read"), "{e}");
    let e = check(3, 1 << 20, 1 << 20).unwrap_err();
    assert!(e.contains("one example of 3 channels x 1048576 frames x 1048576 x 1048576 is over"), "{e}");
    assert!(check(3, 16, 1 << 14).is_err() && check(3, 16, 112).is_ok());
}

#[test]
fn features_without_columns_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let meta = FeaturesMeta { dim: 0, source: "test".into() };
    Features { meta, train: vec![], test: vec![] }.save(dir.path()).unwrap();
    let e = validate(dir.path(), Kind::Features, None).unwrap_err();
    assert!(e.to_string().contains("`dim` is 0"), "{e}");
}

#[test]
fn permutations_must_be_as_many_as_declared_and_distinct() {
    let check = |count: usize, perms: Vec<[u8; 9]>| {
        let dir = tempfile::tempdir().unwrap();
        let meta = PermutationsMeta { count, min_hamming: 2, source: "test".into() };
        Permutations { meta, perms }.save(dir.path()).unwrap();
        validate(dir.path(), Kind::Permutations, None).map_err(|e| e.to_string())
    };
    let (a, b) = ([0, 1, 2, 3, 4, 5, 6, 7, 8], [1, 0, 2, 3, 4, 5, 6, 7, 8]);
    assert!(check(2, vec![a, b]).is_ok());
    let c = [1, 2, 0, 3, 4, 5, 6, 7, 8];
    let e = check(2, vec![a, c]).unwrap_err();
    assert!(e.contains("`min_hamming` is 2, but the permutations' smallest Hamming distance is 3"), "{e}");
    assert!(check(5, vec![a, b]).unwrap_err().contains("holds 2 permutations, but meta.json has count = 5"));
    assert!(check(2, vec![a, a]).unwrap_err().contains("1 repeated"));
    // A stray byte past the last order, a tensor of another rank, an extra tensor: refused by
    // name (the stray byte was dropped and the rest published).
    let dir = tempfile::tempdir().unwrap();
    let meta = PermutationsMeta { count: 1, min_hamming: 9, source: "test".into() };
    Permutations { meta, perms: vec![a] }.save(dir.path()).unwrap();
    let file = dir.path().join("permutations.safetensors");
    let save = |tensors: Vec<(&str, candle_core::Tensor)>| {
        crate::artifact::tensors::save(&file, tensors).unwrap();
        validate(dir.path(), Kind::Permutations, None).map_err(|e| e.to_string())
    };
    let cpu = &candle_core::Device::Cpu;
    let ten: Vec<u8> = a.iter().copied().chain([0]).collect();
    let e = save(vec![("perms", candle_core::Tensor::from_vec(ten.clone(), 10, cpu).unwrap())]).unwrap_err();
    assert!(e.contains("tensor `perms` has shape [10], but must have 2 dimensions"), "{e}");
    let e = save(vec![("perms", candle_core::Tensor::from_vec(ten, (2, 5), cpu).unwrap())]).unwrap_err();
    assert!(e.contains("tensor `perms` has shape [2, 5], but must be [P, 9]"), "{e}");
    let perms = candle_core::Tensor::from_vec(a.to_vec(), (1, 9), cpu).unwrap();
    let junk = candle_core::Tensor::from_vec(vec![f32::NAN], 1, cpu).unwrap();
    let e = save(vec![("perms", perms.clone()), ("junk", junk)]).unwrap_err();
    assert!(e.contains("junk"), "{e}");
    // Too many orders is refused from the header, before the file is loaded (and so before its
    // count is compared with meta.json's).
    let many = candle_core::Tensor::zeros((10_001, 9), candle_core::DType::U8, cpu).unwrap();
    let e = save(vec![("perms", many)]).unwrap_err();
    assert!(e.contains("holds 10001 permutations; at most 10000 are read"), "{e}");
    assert!(save(vec![("perms", perms)]).is_ok());
}

/// A model folder of resnet_tiny (4 classes, 1 channel) with fresh weights, for editing.
fn model_dir() -> tempfile::TempDir {
    use crate::nn::{build_model, init_weights, save_model, Arch, Normalization};
    let dir = tempfile::tempdir().unwrap();
    let arch = Arch::preset("resnet_tiny", 1, 4).unwrap();
    let vm = candle_nn::VarMap::new();
    build_model(&arch, &vm, &candle_core::Device::Cpu, true).unwrap();
    init_weights(&vm, 1).unwrap();
    let norm = Normalization { mean: vec![0.2], std: vec![0.3] };
    save_model(&dir.path().join("model.safetensors"), &vm, &arch, &norm).unwrap();
    dir
}

/// Edits `model.json` in place.
fn edit_model_json(dir: &Path, edit: impl FnOnce(&mut serde_json::Value)) {
    let path = dir.join("model.json");
    let mut v: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    edit(&mut v);
    std::fs::write(&path, serde_json::to_vec(&v).unwrap()).unwrap();
}

/// Rewrites one tensor of `model.safetensors` through `f`.
fn edit_weight(dir: &Path, suffix: &str, f: impl Fn(&candle_core::Tensor) -> candle_core::Tensor) {
    let path = dir.join("model.safetensors");
    let mut all = candle_core::safetensors::load(&path, &candle_core::Device::Cpu).unwrap();
    // The first in name order: the map's own order changes from run to run.
    let name = all.keys().filter(|k| k.ends_with(suffix)).min().unwrap().clone();
    let edited = f(&all[&name]);
    all.insert(name, edited);
    candle_core::safetensors::save(&all, &path).unwrap();
}

/// Weights that fit and are finite but mean nothing (a negative variance, another dtype, a
/// standard deviation at or below 0), and a model.json declaring a network far larger than
/// its weights, are refused with the tensor or field named; the last without building the
/// declared network (a billion classes: 32 GB), which used to take the machine's memory.
#[test]
fn a_model_that_would_compute_garbage_or_exhaust_memory_is_refused() {
    let check = |dir: &tempfile::TempDir| validate(dir.path(), Kind::Model, None).map_err(|e| e.to_string());
    check(&model_dir()).unwrap();
    let dir = model_dir();
    edit_weight(dir.path(), "running_var", |t| (t.ones_like().unwrap() * -1.0).unwrap());
    let e = check(&dir).unwrap_err();
    assert!(e.contains("running_var") && e.contains("a variance is at least 0"), "{e}");
    let dir = model_dir();
    edit_weight(dir.path(), "bn1.weight", |t| t.to_dtype(candle_core::DType::F64).unwrap());
    let e = check(&dir).unwrap_err();
    assert!(e.contains("bn1.weight") && e.contains("is F64, not F32"), "{e}");
    for std in [-1e-30, 0.0] {
        let dir = model_dir();
        edit_model_json(dir.path(), |v| v["norm"]["std"] = serde_json::json!([std]));
        let e = check(&dir).unwrap_err();
        assert!(e.contains("`norm.std` holds") && e.contains("above 0"), "{e}");
    }
    let dir = model_dir();
    edit_model_json(dir.path(), |v| v["arch"]["num_classes"] = serde_json::json!(1_000_000_000u64));
    let e = check(&dir).unwrap_err();
    assert!(e.contains("shape mismatch for fc.weight") && e.contains("[1000000000,"), "{e}");
    let dir = model_dir();
    edit_model_json(dir.path(), |v| v["arch"]["widths"] = serde_json::json!([100_000, 100_000, 100_000, 100_000]));
    let e = check(&dir).unwrap_err();
    assert!(e.contains("weights do not fit the architecture"), "{e}");
}

/// Stray tensors (half a tag set, a NaN beside the features), tag sets out of order or
/// repeating a tag, a tag map of the wrong length or naming an absurd class, and multi-hot
/// rows of another width than the classes are refused before anything reads them.
#[test]
fn stray_tensors_and_malformed_tag_sets_are_refused() {
    use crate::artifact::tensors;
    let tagged = |sets: &[Vec<u32>], tag_classes: Vec<Vec<u32>>| {
        let dir = tempfile::tempdir().unwrap();
        let meta = LabelsMeta { num_classes: 4, class_names: vec![], source: "t".into(), tag_classes };
        let t = TagSets { offsets: vec![0], ids: vec![] };
        let mut labels = Labels { meta, train: vec![0; sets.len()], test: vec![0], tags: Some((t.clone(), t)) };
        let mut offsets = vec![0u32];
        let mut ids = Vec::new();
        for s in sets {
            ids.extend(s);
            offsets.push(ids.len() as u32);
        }
        labels.tags = Some((TagSets { offsets, ids }, TagSets { offsets: vec![0, 1], ids: vec![0] }));
        labels.save(dir.path()).unwrap();
        dir
    };
    let check = |dir: &tempfile::TempDir, kind| validate(dir.path(), kind, None).map_err(|e| e.to_string());
    check(&tagged(&[vec![0, 2], vec![]], vec![]), Kind::Labels).unwrap();
    check(&tagged(&[vec![0, 2], vec![1]], vec![vec![0], vec![1], vec![], vec![0, 1]]), Kind::Labels).unwrap();
    let e = check(&tagged(&[vec![2, 0]], vec![]), Kind::Labels).unwrap_err();
    assert!(e.contains("train image 0's tag set [2, 0] is not ascending without repeats"), "{e}");
    assert!(check(&tagged(&[vec![3, 3]], vec![]), Kind::Labels).unwrap_err().contains("without repeats"));
    let e = check(&tagged(&[vec![0]], vec![vec![0]]), Kind::Labels).unwrap_err();
    assert!(e.contains("`tag_classes` maps 1 tags, but there are num_classes = 4"), "{e}");
    let e = check(&tagged(&[vec![0]], vec![vec![0], vec![], vec![], vec![4_294_967_295]]), Kind::Labels).unwrap_err();
    assert!(e.contains("`tag_classes` names class 4294967295"), "{e}");
    // Half a tag set: only the test split's tensors, with ids far out of range.
    let dir = labels_dir(4, vec![]);
    let path = dir.path().join("labels.safetensors");
    let mut all = candle_core::safetensors::load(&path, &candle_core::Device::Cpu).unwrap();
    let cpu = candle_core::Device::Cpu;
    all.insert("test_tag_offsets".into(), candle_core::Tensor::new(&[0u32, 1], &cpu).unwrap());
    all.insert("test_tag_ids".into(), candle_core::Tensor::new(&[99u32], &cpu).unwrap());
    candle_core::safetensors::save(&all, &path).unwrap();
    let e = check(&dir, Kind::Labels).unwrap_err();
    assert!(e.contains("has no tensor `train_tag_offsets`"), "{e}");
    // A stray NaN tensor beside features.
    let dir = tempfile::tempdir().unwrap();
    let meta = FeaturesMeta { dim: 2, source: "t".into() };
    Features { meta, train: vec![1.0, 2.0], test: vec![3.0, 4.0] }.save(dir.path()).unwrap();
    check(&dir, Kind::Features).unwrap();
    let path = dir.path().join("features.safetensors");
    let mut all = candle_core::safetensors::load(&path, &cpu).unwrap();
    all.insert("junk".into(), candle_core::Tensor::new(&[f32::NAN], &cpu).unwrap());
    candle_core::safetensors::save(&all, &path).unwrap();
    let e = check(&dir, Kind::Features).unwrap_err();
    assert!(e.contains("holds a tensor `junk` the format lacks"), "{e}");
    // Multi-hot rows of 3 columns for 5 classes.
    let dir = tempfile::tempdir().unwrap();
    let meta = crate::artifact::MultiLabelsMeta { num_classes: 5, class_names: vec![], source: "t".into() };
    tensors::save_splits(dir.path(), "multilabels.safetensors", (&[0u8, 1, 0][..], &[1u8, 0, 0][..]), &[3], &meta)
        .unwrap();
    let e = check(&dir, Kind::MultiLabels).unwrap_err();
    assert!(e.contains("`train` has 3 columns, but meta.json has num_classes = 5"), "{e}");
}

#[test]
fn a_model_with_a_nan_weight_is_refused() {
    let dir = model_dir();
    edit_weight(dir.path(), "bn1.weight", |t| t.affine(0.0, f64::NAN).unwrap());
    let e = validate(dir.path(), Kind::Model, None).unwrap_err();
    assert!(e.to_string().contains("tensor `bn1.weight` holds NaN"), "{e}");
}

/// A field the format lacks (a misspelling most often) is refused, naming it and the fields
/// that may stand there, in meta.json and at each level of model.json; serde skipped it, so
/// `class_name` lost a command's class names without a word.
#[test]
fn fields_the_format_lacks_are_refused_where_they_stand() {
    let dir = labels_dir(4, vec![]);
    let path = dir.path().join("meta.json");
    let mut v: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    v["class_name"] = serde_json::json!(["a", "b", "c", "d"]);
    std::fs::write(&path, serde_json::to_vec(&v).unwrap()).unwrap();
    let e = validate(dir.path(), Kind::Labels, None).unwrap_err().to_string();
    assert!(e.starts_with("meta.json: has an unknown field `class_name`"), "{e}");
    assert!(e.contains("num_classes, class_names, source, tag_classes"), "{e}");

    let check = |dir: &tempfile::TempDir| validate(dir.path(), Kind::Model, None).map_err(|e| e.to_string());
    for (edit, unknown, listed) in [
        ("/tag", "`tag`", "format, version, arch, norm"),
        ("/norm/stdev", "`norm.stdev`", "mean, std"),
        ("/arch/width", "`arch.width`", "an image network's `arch` holds: in_channels, stem_width, widths"),
        ("/arch/temporal_kernel", "`arch.temporal_kernel`", "a video network's: in_channels"),
    ] {
        let dir = model_dir();
        let (parent, key) = edit.rsplit_once('/').unwrap();
        edit_model_json(dir.path(), |v| v.pointer_mut(parent).unwrap()[key] = serde_json::json!(1));
        let e = check(&dir).unwrap_err();
        assert!(e.starts_with(&format!("model.json: has an unknown field {unknown}")), "{edit}: {e}");
        assert!(e.contains(listed), "{edit}: {e}");
    }
}

/// A video network's model.json passes, and a misspelt field of its `arch` is the one named
/// (not the video network's own fields, which an image network lacks).
#[test]
fn a_video_network_is_read_against_its_own_fields() {
    use crate::nn::{build_model, init_weights, save_model, Arch, Normalization};
    let dir = tempfile::tempdir().unwrap();
    let arch = Arch::preset("r2plus1d_tiny", 3, 4).unwrap();
    let vm = candle_nn::VarMap::new();
    build_model(&arch, &vm, &candle_core::Device::Cpu, true).unwrap();
    init_weights(&vm, 1).unwrap();
    let norm = Normalization { mean: vec![0.2; 3], std: vec![0.3; 3] };
    save_model(&dir.path().join("model.safetensors"), &vm, &arch, &norm).unwrap();
    validate(dir.path(), Kind::Model, None).unwrap();
    edit_model_json(dir.path(), |v| {
        let kernel = v["arch"].as_object_mut().unwrap().remove("temporal_kernel").unwrap();
        v["arch"]["temporal_kernal"] = kernel;
    });
    let e = validate(dir.path(), Kind::Model, None).unwrap_err().to_string();
    assert!(e.contains("unknown field `arch.temporal_kernal` (an image network's"), "{e}");
}
