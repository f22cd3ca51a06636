//! Motion patterns ("verbs") and their trajectories.
//!
//! A [`Motion`] is a verb plus its drawn parameters; [`Motion::pose_at`] gives the object's pose
//! (centre, angle, scale, in canvas pixels and radians) at frame `t` of `T`. Every verb has a
//! time reversal: [`Motion::reversed`] returns a motion of verb [`Verb::reverse`] whose poses are
//! this motion's poses played backwards, which is what makes the temporal target
//! (Something-Something's role) unsolvable for a model that ignores frame order.
//!
//! Screen coordinates: x grows to the right, y grows downwards, so a clockwise rotation or orbit
//! increases the angle.

use serde::{Deserialize, Serialize};

/// A motion pattern; the order of [`Verb::RANKED`] is the "frequency" ranking used for top-m
/// subsets (paper §5.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verb {
    /// Translate to the right.
    TranslateRight,
    /// Translate to the left.
    TranslateLeft,
    /// Translate upwards.
    TranslateUp,
    /// Translate downwards.
    TranslateDown,
    /// Rotate clockwise in place.
    RotateCw,
    /// Rotate counter-clockwise in place.
    RotateCcw,
    /// Grow.
    ZoomIn,
    /// Shrink.
    ZoomOut,
    /// Orbit a point clockwise.
    OrbitCw,
    /// Orbit a point counter-clockwise.
    OrbitCcw,
    /// One hop up and back down (its own reversal).
    Bounce,
    /// Jitter left and right every frame (its own reversal, with the phase flipped).
    Shake,
    /// Translate up and to the right.
    TranslateUpRight,
    /// Translate down and to the left.
    TranslateDownLeft,
    /// Translate up and to the left.
    TranslateUpLeft,
    /// Translate down and to the right.
    TranslateDownRight,
}

/// The trajectory family of a verb (the Sports1M-role vocabulary is family x speed).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    /// Straight-line translation.
    Line,
    /// Rotation in place.
    Spin,
    /// Scaling.
    Zoom,
    /// Circular orbit.
    Orbit,
    /// Back-and-forth (bounce, shake).
    Oscillate,
}

impl Family {
    /// All families, in label order.
    pub const ALL: [Family; 5] = [Family::Line, Family::Spin, Family::Zoom, Family::Orbit, Family::Oscillate];

    /// Lower-case name.
    pub fn name(self) -> &'static str {
        ["line", "spin", "zoom", "orbit", "oscillate"][self as usize]
    }
}

impl Verb {
    /// Every verb, most "frequent" first. A fixed order, not one that spreads a prefix over the
    /// families: the top 2 are both lines and the top 4 and 8 cover 3 of the 5; what it keeps is
    /// every reversible verb's reversal inside the prefixes of 2, 8, 10, 11, 12, 14 and 16, which
    /// the `temporal` space needs.
    pub const RANKED: [Verb; 16] = [
        Verb::TranslateRight,
        Verb::TranslateLeft,
        Verb::RotateCw,
        Verb::ZoomIn,
        Verb::TranslateUp,
        Verb::TranslateDown,
        Verb::RotateCcw,
        Verb::ZoomOut,
        Verb::OrbitCw,
        Verb::OrbitCcw,
        Verb::Bounce,
        Verb::Shake,
        Verb::TranslateUpRight,
        Verb::TranslateDownLeft,
        Verb::TranslateUpLeft,
        Verb::TranslateDownRight,
    ];

    /// The snake_case name.
    pub fn name(self) -> &'static str {
        match self {
            Verb::TranslateRight => "translate_right",
            Verb::TranslateLeft => "translate_left",
            Verb::TranslateUp => "translate_up",
            Verb::TranslateDown => "translate_down",
            Verb::RotateCw => "rotate_cw",
            Verb::RotateCcw => "rotate_ccw",
            Verb::ZoomIn => "zoom_in",
            Verb::ZoomOut => "zoom_out",
            Verb::OrbitCw => "orbit_cw",
            Verb::OrbitCcw => "orbit_ccw",
            Verb::Bounce => "bounce",
            Verb::Shake => "shake",
            Verb::TranslateUpRight => "translate_up_right",
            Verb::TranslateDownLeft => "translate_down_left",
            Verb::TranslateUpLeft => "translate_up_left",
            Verb::TranslateDownRight => "translate_down_right",
        }
    }

    /// The verb a clip of this verb shows when played backwards.
    pub fn reverse(self) -> Verb {
        match self {
            Verb::TranslateRight => Verb::TranslateLeft,
            Verb::TranslateLeft => Verb::TranslateRight,
            Verb::TranslateUp => Verb::TranslateDown,
            Verb::TranslateDown => Verb::TranslateUp,
            Verb::RotateCw => Verb::RotateCcw,
            Verb::RotateCcw => Verb::RotateCw,
            Verb::ZoomIn => Verb::ZoomOut,
            Verb::ZoomOut => Verb::ZoomIn,
            Verb::OrbitCw => Verb::OrbitCcw,
            Verb::OrbitCcw => Verb::OrbitCw,
            Verb::Bounce => Verb::Bounce,
            Verb::Shake => Verb::Shake,
            Verb::TranslateUpRight => Verb::TranslateDownLeft,
            Verb::TranslateDownLeft => Verb::TranslateUpRight,
            Verb::TranslateUpLeft => Verb::TranslateDownRight,
            Verb::TranslateDownRight => Verb::TranslateUpLeft,
        }
    }

    /// Its trajectory family.
    pub fn family(self) -> Family {
        match self {
            Verb::RotateCw | Verb::RotateCcw => Family::Spin,
            Verb::ZoomIn | Verb::ZoomOut => Family::Zoom,
            Verb::OrbitCw | Verb::OrbitCcw => Family::Orbit,
            Verb::Bounce | Verb::Shake => Family::Oscillate,
            _ => Family::Line,
        }
    }

    /// Unit direction of a translation (screen coordinates), `None` for other families.
    fn direction(self) -> Option<(f32, f32)> {
        let d = std::f32::consts::FRAC_1_SQRT_2;
        Some(match self {
            Verb::TranslateRight => (1.0, 0.0),
            Verb::TranslateLeft => (-1.0, 0.0),
            Verb::TranslateUp => (0.0, -1.0),
            Verb::TranslateDown => (0.0, 1.0),
            Verb::TranslateUpRight => (d, -d),
            Verb::TranslateDownLeft => (-d, d),
            Verb::TranslateUpLeft => (-d, -d),
            Verb::TranslateDownRight => (d, d),
            _ => return None,
        })
    }

    /// +1 for clockwise / growing, -1 for the opposite, 0 for verbs without a sense of turn.
    fn sense(self) -> f32 {
        match self {
            Verb::RotateCw | Verb::ZoomIn | Verb::OrbitCw => 1.0,
            Verb::RotateCcw | Verb::ZoomOut | Verb::OrbitCcw => -1.0,
            _ => 0.0,
        }
    }
}

/// Where the object is and how it looks geometrically in one frame.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Pose {
    /// Centre x in canvas pixels.
    pub x: f32,
    /// Centre y in canvas pixels.
    pub y: f32,
    /// Rotation in radians (clockwise on screen).
    pub angle: f32,
    /// Object side as a fraction of its source image side.
    pub scale: f32,
}

/// A verb with its drawn parameters.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Motion {
    /// The motion pattern.
    pub verb: Verb,
    /// Pose at frame 0, except for orbits, whose `x, y` is the orbit's centre.
    pub start: Pose,
    /// Per-frame rate: pixels (line), radians (spin, orbit), log-scale (zoom).
    pub rate: f32,
    /// Orbit radius, bounce height or shake half-width, in pixels (signed for shake's phase).
    pub amplitude: f32,
    /// Orbit: angle of the object around the centre at frame 0.
    pub phase: f32,
}

impl Motion {
    /// The pose at frame `t` of a clip of `frames` frames.
    pub fn pose_at(&self, t: usize, frames: usize) -> Pose {
        let tf = t as f32;
        let mut p = self.start;
        let sense = self.verb.sense();
        match self.verb.family() {
            Family::Line => {
                let (dx, dy) = self.verb.direction().expect("line verbs have a direction");
                p.x += dx * self.rate * tf;
                p.y += dy * self.rate * tf;
            }
            Family::Spin => p.angle += sense * self.rate * tf,
            Family::Zoom => p.scale *= (sense * self.rate * tf).exp(),
            Family::Orbit => {
                let a = self.phase + sense * self.rate * tf;
                p.x += self.amplitude * a.cos();
                p.y += self.amplitude * a.sin();
            }
            Family::Oscillate => match self.verb {
                Verb::Bounce => {
                    let span = (frames.max(2) - 1) as f32;
                    p.y -= self.amplitude * (std::f32::consts::PI * tf / span).sin();
                }
                _ => p.x += if t.is_multiple_of(2) { self.amplitude } else { -self.amplitude },
            },
        }
        p
    }

    /// The motion whose frame `t` is this motion's frame `frames - 1 - t`.
    pub fn reversed(&self, frames: usize) -> Motion {
        let last = (frames.max(1) - 1) as f32;
        let mut m = Motion { verb: self.verb.reverse(), ..*self };
        match self.verb.family() {
            Family::Line | Family::Spin | Family::Zoom => m.start = self.pose_at(frames.max(1) - 1, frames),
            Family::Orbit => m.phase = self.phase + self.verb.sense() * self.rate * last,
            Family::Oscillate => {
                if self.verb == Verb::Shake && (frames.max(1) - 1) % 2 == 1 {
                    // An odd number of steps flips which side the shake starts on.
                    m.amplitude = -self.amplitude;
                }
            }
        }
        m
    }
}
