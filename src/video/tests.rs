use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::render::{Canvas, Sprite};
use super::*;

/// A 12x12 sprite: a bright off-centre blob, so rotations and positions are visible.
fn sprite_pixels() -> Vec<u8> {
    let mut p = vec![0u8; 144];
    for y in 2..9 {
        for x in 3..7 {
            p[y * 12 + x] = 250;
        }
    }
    p[2 * 12 + 9] = 255;
    p
}

fn clean_style() -> ClipStyle {
    ClipStyle { size: 32, frames: 8, distractors: 0, clutter: 0.0 }
}

fn render(motion: &Motion, style: &ClipStyle) -> Vec<u8> {
    let pixels = sprite_pixels();
    let mut out = vec![0u8; style.frames * style.size * style.size];
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let sprite = Sprite { pixels: &pixels, side: 12 };
    render_clip(motion, sprite, 1.0, &Canvas::new(style.size), style, &mut rng, &mut out);
    out
}

/// Intensity-weighted centroid (x, y) of each frame.
fn centroids(clip: &[u8], size: usize) -> Vec<(f64, f64)> {
    clip.chunks_exact(size * size)
        .map(|f| {
            let (mut sx, mut sy, mut sw) = (0.0, 0.0, 0.0);
            for (i, &v) in f.iter().enumerate() {
                let w = v as f64;
                sx += w * (i % size) as f64;
                sy += w * (i / size) as f64;
                sw += w;
            }
            (sx / sw, sy / sw)
        })
        .collect()
}

#[test]
fn translate_right_moves_the_object_right_every_frame() {
    let style = clean_style();
    for seed in 0..5 {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let m = draw_motion(Verb::TranslateRight, seed % 2 == 0, &style, 12, &mut rng);
        let c = centroids(&render(&m, &style), style.size);
        for w in c.windows(2) {
            assert!(w[1].0 > w[0].0 + 0.3, "x must grow: {c:?}");
            assert!((w[1].1 - w[0].1).abs() < 0.2, "y must stay: {c:?}");
        }
        let up = draw_motion(Verb::TranslateUp, true, &style, 12, &mut rng);
        let c = centroids(&render(&up, &style), style.size);
        assert!(c[7].1 < c[0].1 - 5.0, "up means decreasing y: {c:?}");
    }
}

#[test]
fn time_reversal_of_a_clip_is_a_clip_of_the_reversed_verb() {
    let style = clean_style();
    let plane = style.size * style.size;
    for (i, &verb) in Verb::RANKED.iter().enumerate() {
        let mut rng = ChaCha8Rng::seed_from_u64(i as u64);
        let m = draw_motion(verb, true, &style, 12, &mut rng);
        let r = m.reversed(style.frames);
        assert_eq!(r.verb, verb.reverse());
        let forward = render(&m, &style);
        let backward = render(&r, &style);
        for t in 0..style.frames {
            let a = &forward[(style.frames - 1 - t) * plane..(style.frames - t) * plane];
            let b = &backward[t * plane..(t + 1) * plane];
            let worst = a.iter().zip(b).map(|(x, y)| x.abs_diff(*y)).max().unwrap();
            assert!(worst <= 2, "{}: frame {t} differs by {worst}", verb.name());
        }
        if verb.reverse() != verb {
            // Played forwards the two differ: the reversed verb is a different motion.
            assert_ne!(forward, backward, "{}", verb.name());
        }
    }
    // Reversed translations really go the other way.
    let mut rng = ChaCha8Rng::seed_from_u64(9);
    let m = draw_motion(Verb::TranslateRight, false, &style, 12, &mut rng).reversed(style.frames);
    let c = centroids(&render(&m, &style), style.size);
    assert!(c[7].0 < c[0].0 - 2.0, "{c:?}");
}

fn source() -> (Vec<u8>, Vec<u32>) {
    let base = sprite_pixels();
    let pixels: Vec<u8> = (0..6).flat_map(|k| base.iter().map(move |&v| v / (k + 1))).collect();
    (pixels, (0..6).collect())
}

#[test]
fn generation_is_seeded_balanced_and_labelled_in_every_space() {
    let (pixels, labels) = source();
    let src = SourceSplit { pixels: &pixels, labels: &labels, side: 12 };
    let style = ClipStyle { size: 16, frames: 4, distractors: 2, clutter: 0.5 };
    let verbs = verb_list(LabelSpace::Verb, 16);
    let a = generate(&src, &verbs, 48, &style, 1, "train");
    let b = generate(&src, &verbs, 48, &style, 1, "train");
    let c = generate(&src, &verbs, 48, &style, 2, "train");
    assert_eq!(a.pixels, b.pixels);
    assert_ne!(a.pixels, c.pixels);
    assert_eq!(a.pixels.len(), 48 * 4 * 16 * 16);
    let mut per_verb = [0; 16];
    a.facts.iter().for_each(|f| per_verb[f.verb] += 1);
    assert!(per_verb.iter().all(|&n| n == 3), "{per_verb:?}");
    let groups = ObjectGroups::for_source("synthetic", &(0..6).map(|i| i.to_string()).collect::<Vec<_>>());
    for space in LabelSpace::NAMES.map(|s| s.parse::<LabelSpace>().unwrap()) {
        let vocab = Vocabulary { space, verbs: verb_list(space, 16), groups: groups.clone() };
        let k = vocab.num_classes();
        assert_eq!(vocab.class_names().len(), k);
        assert!(a.facts.iter().all(|f| (vocab.label(f) as usize) < k || space == LabelSpace::Temporal));
    }
    let temporal = verb_list(LabelSpace::Temporal, 16);
    assert_eq!(temporal.len(), 14);
    assert!(temporal.iter().all(|v| temporal.contains(&v.reverse()) && v.reverse() != *v));
    let fashion = ObjectGroups::for_source("fashion-mnist", &(0..10).map(|i| i.to_string()).collect::<Vec<_>>());
    let kin = Vocabulary { space: LabelSpace::Kinetics, verbs: verb_list(LabelSpace::Verb, 4), groups: fashion };
    assert_eq!(kin.num_classes(), 16);
    assert_eq!(kin.label(&ClipFacts { verb: 2, object: 8, fast: false }), 2 * 4 + 3, "bag is group 3");
}

/// `sports` with fewer verbs than all has the classes of the families they move in: one verb
/// (a translation) gives line slow and fast, not ten classes of which eight no clip has; all
/// sixteen keep the ten ids they always had.
#[test]
fn sports_has_the_classes_of_the_families_its_verbs_move_in() {
    let groups = ObjectGroups::for_source("synthetic", &["0".to_string()]);
    let vocab =
        |m| Vocabulary { space: LabelSpace::Sports, verbs: verb_list(LabelSpace::Sports, m), groups: groups.clone() };
    let one = vocab(1);
    assert_eq!((one.num_classes(), one.class_names()), (2, vec!["line slow".to_string(), "line fast".to_string()]));
    assert_eq!(one.label(&ClipFacts { verb: 0, object: 0, fast: true }), 1);
    let three = vocab(3);
    assert_eq!(three.num_classes(), 4, "{:?}", three.class_names());
    assert_eq!(three.label(&ClipFacts { verb: 2, object: 0, fast: false }), 2, "RotateCw spins: the second family");
    let all = vocab(16);
    assert_eq!(all.num_classes(), 10);
    for (verb, v) in Verb::RANKED.iter().enumerate() {
        assert_eq!(all.label(&ClipFacts { verb, object: 0, fast: true }), v.family() as u32 * 2 + 1);
    }
}

#[test]
fn strip_png_has_one_row_per_clip() {
    let (pixels, labels) = source();
    let src = SourceSplit { pixels: &pixels, labels: &labels, side: 12 };
    let style = ClipStyle { size: 16, frames: 4, distractors: 1, clutter: 0.2 };
    let g = generate(&src, &verb_list(LabelSpace::Verb, 4), 3, &style, 0, "test");
    let png = strip::png_strip(&g.pixels, &[0, 2], strip::StripLayout { frames: 4, size: 16, zoom: 2 }).unwrap();
    let pm = tiny_skia::Pixmap::decode_png(&png).unwrap();
    assert_eq!((pm.width(), pm.height()), (4 * 32 + 5 * 2, 2 * 32 + 3 * 2));
}
