//! The COCO localization metric and VQA exact match against the notebook's own Python code
//! (tools/reference/coco_metrics_reference.py: its functions verbatim, with supervision 0.31.2 from
//! PyPI): the same ground truth and model answers must give the same boxes, statuses, display
//! labels, per-image numbers (bit for bit), run summary, per-class recall and best/worst images.
//! Cases: hand-made edge cases (no predictions, no ground truth, duplicate boxes, class mismatches,
//! exact ties, thresholds hit exactly, half-way rounding of labels, key aliases, junk answers) and
//! a few hundred generated images.
//!
//! numpy's tie order in argsort is machine-specific when it uses its AVX2/AVX-512 sorts; the
//! reference runs with those switched off (see src/eval/argsort.rs). Needs
//! `VLMBENCH_REFERENCE_PYTHON` (tools/test.sh sets it); without it the test says so and passes.

#[allow(dead_code)] // each test crate uses part of the shared support
mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::cli::text;
use common::dataset_fixtures::COCO_NAMES;
use serde_json::{json, Value};
use vlmbench::eval::detection::{ground_truth, parse_predictions, Categories, GtObject};
use vlmbench::eval::matching::evaluate;
use vlmbench::eval::summary::{coco_summary, vqa_exact_match, ScoredImage};
use vlmbench::tasks::coords::ImageSize;

fn reference_python() -> Option<PathBuf> {
    match std::env::var_os("VLMBENCH_REFERENCE_PYTHON") {
        Some(p) => Some(PathBuf::from(p)),
        None => {
            eprintln!("NOT RUN: set VLMBENCH_REFERENCE_PYTHON (tools/test.sh does) to compare with the notebook's metric code");
            None
        }
    }
}

/// One image of a case: size, COCO objects (xywh, category), the model's answer.
fn image(w: u32, h: u32, objects: &[([f64; 4], i64)], response: &str) -> Value {
    json!({
        "width": w, "height": h, "time_s": 1.5,
        "objects": {"bbox": objects.iter().map(|o| o.0.to_vec()).collect::<Vec<_>>(),
                    "category": objects.iter().map(|o| o.1).collect::<Vec<_>>()},
        "response": response,
    })
}

/// box_2d for a pixel box in an image of 1000x1000 (then pixels == model units).
fn b2d(label: &str, x0: f64, y0: f64, x1: f64, y1: f64) -> String {
    format!(r#"{{"label": "{label}", "box_2d": [{y0}, {x0}, {y1}, {x1}]}}"#)
}

fn hand_made() -> Vec<Value> {
    let person = 0;
    let car = 2;
    let dog = 16;
    vec![
        // No predictions at all, then an empty answer, an empty array, prose, truncated JSON.
        image(
            640,
            480,
            &[
                ([10.0, 10.0, 100.0, 100.0], person),
                ([200.0, 50.0, 120.0, 90.0], car),
            ],
            "I cannot see anything.",
        ),
        image(
            640,
            480,
            &[
                ([10.0, 10.0, 100.0, 100.0], person),
                ([0.0, 0.0, 50.0, 50.0], person),
            ],
            "",
        ),
        image(
            640,
            480,
            &[
                ([10.0, 10.0, 100.0, 100.0], person),
                ([0.0, 0.0, 50.0, 50.0], person),
            ],
            "[]",
        ),
        image(
            640,
            480,
            &[([10.0, 10.0, 100.0, 100.0], dog)],
            r#"[{"label": "dog", "box_2d": [10, 10, 200"#,
        ),
        // No scored ground truth (tiny, unknown category) but predictions.
        image(
            1000,
            1000,
            &[
                ([10.0, 10.0, 20.0, 20.0], person),
                ([0.0, 0.0, 300.0, 300.0], 99),
            ],
            &format!("[{}]", b2d("person", 0.0, 0.0, 300.0, 300.0)),
        ),
        // Nothing anywhere.
        image(1000, 1000, &[], "[]"),
        // Duplicate predictions of one object; a class mismatch on an exact box; a near miss.
        image(
            1000,
            1000,
            &[
                ([100.0, 100.0, 200.0, 200.0], person),
                ([500.0, 500.0, 200.0, 100.0], car),
            ],
            &format!(
                "```json\n[{}, {}, {}, {}]\n```",
                b2d("person", 100.0, 100.0, 300.0, 300.0),
                b2d("man", 100.0, 100.0, 300.0, 300.0),
                b2d("dog", 500.0, 500.0, 700.0, 600.0),
                b2d("person", 100.0, 100.0, 300.0, 160.0)
            ),
        ),
        // Exact ties: identical ground-truth boxes and identical predictions (20 equal candidates,
        // past numpy's insertion-sort cutoff), and one prediction equally good for two objects.
        image(
            1000,
            1000,
            &[([0.0, 0.0, 400.0, 400.0], person); 5],
            &format!(
                "[{}]",
                vec![b2d("person", 0.0, 0.0, 400.0, 400.0); 4].join(", ")
            ),
        ),
        image(
            1000,
            1000,
            &[
                ([0.0, 0.0, 200.0, 200.0], person),
                ([200.0, 0.0, 200.0, 200.0], person),
            ],
            &format!(
                "[{}, {}]",
                b2d("person", 100.0, 0.0, 300.0, 200.0),
                b2d("person", 100.0, 0.0, 300.0, 200.0)
            ),
        ),
        // IoU exactly 0.5 and 0.3 (within float32), and labels that round half-way (0.125, 0.375, 0.625).
        image(
            1000,
            1000,
            &[
                ([0.0, 0.0, 100.0, 100.0], person),
                ([300.0, 0.0, 100.0, 100.0], car),
                ([600.0, 0.0, 100.0, 100.0], dog),
            ],
            &format!(
                "[{}, {}, {}]",
                b2d("person", 0.0, 0.0, 100.0, 50.0),
                b2d("car", 300.0, 0.0, 400.0, 30.0),
                b2d("dog", 600.0, 0.0, 700.0, 62.5)
            ),
        ),
        image(
            1000,
            1000,
            &[
                ([0.0, 0.0, 400.0, 400.0], person),
                ([500.0, 500.0, 400.0, 400.0], car),
            ],
            &format!(
                "[{}, {}, {}]",
                b2d("person", 0.0, 0.0, 400.0, 50.0),
                b2d("person", 0.0, 0.0, 400.0, 150.0),
                b2d("car", 500.0, 500.0, 900.0, 750.0)
            ),
        ),
        // Key aliases, numeric strings, booleans, infinities (a NaN makes supervision raise: not comparable), inverted and one-pixel boxes, non-objects.
        image(
            800,
            600,
            &[
                ([50.5, 60.25, 300.1, 200.7], person),
                ([400.0, 300.0, 350.3, 250.9], 62),
            ],
            concat!(
                r#"Sure! [{"class": "Person", "bbox": ["100", "60", 450, "400"]}, {"name": "television", "box": [500, 500, 1000, 940.5]},"#,
                r#" {"object": "tv monitor", "bounding_box": [true, 500, 900, 1000]}, {"label": "person", "box_2d": ["inf", "-inf", 500, 500]},"#,
                r#" {"label": "person", "box_2d": [500, 500, 100, 100]}, {"label": "person", "box_2d": [0, 0, 1, 900]}, 7, null,"#,
                r#" {"label": "", "class": null, "name": "car", "box_2d": [10, 10, 20]}, {"label": "unicorn", "box_2d": [0, 0, 100, 100]}] trailing"#
            ),
        ),
        // Fractional float32 boxes close to the 32x32 cut.
        image(
            333,
            517,
            &[
                ([1.1, 2.2, 31.99, 32.02], person),
                ([10.3, 10.7, 32.0, 32.0], car),
                ([0.1, 0.2, 150.33, 99.97], dog),
            ],
            &format!("[{}]", b2d("dog", 0.0, 0.0, 450.0, 190.0)),
        ),
    ]
}

/// A small deterministic generator for the random cases (no external crate needed).
struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> f64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
    fn below(&mut self, n: u64) -> u64 {
        (self.next() * n as f64) as u64
    }
}

fn generated(count: usize) -> Vec<Value> {
    let mut rng = Lcg(2024);
    let classes = [0i64, 2, 16, 56, 60, 62, 41, 39];
    (0..count)
        .map(|_| {
            let (w, h) = (200 + rng.below(1200) as u32, 200 + rng.below(900) as u32);
            let n_gt = rng.below(7) as usize;
            let mut objects = Vec::new();
            for _ in 0..n_gt {
                let x = (rng.next() * f64::from(w) * 0.8 * 100.0).round() / 100.0;
                let y = (rng.next() * f64::from(h) * 0.8 * 100.0).round() / 100.0;
                let bw = (rng.next() * (f64::from(w) - x) * 100.0).round() / 100.0;
                let bh = (rng.next() * (f64::from(h) - y) * 100.0).round() / 100.0;
                objects.push((
                    [x, y, bw, bh],
                    classes[rng.below(classes.len() as u64) as usize],
                ));
            }
            let mut dets = Vec::new();
            for (k, o) in objects.iter().enumerate() {
                if rng.next() < 0.7 {
                    // Near the object, in model units, sometimes another class, sometimes twice.
                    let jitter = |rng: &mut Lcg| (rng.next() - 0.5) * 80.0;
                    let to = |v: f64, side: u32| (v / f64::from(side) * 1000.0).round();
                    let [x, y, bw, bh] = o.0;
                    let label = if rng.next() < 0.2 {
                        COCO_NAMES[classes[(k + 1) % classes.len()] as usize]
                    } else {
                        COCO_NAMES[o.1 as usize]
                    };
                    let d = format!(
                        r#"{{"label": "{label}", "box_2d": [{}, {}, {}, {}]}}"#,
                        to(y, h) + jitter(&mut rng).round(),
                        to(x, w) + jitter(&mut rng).round(),
                        to(y + bh, h) + jitter(&mut rng).round(),
                        to(x + bw, w) + jitter(&mut rng).round()
                    );
                    if rng.next() < 0.15 {
                        dets.push(d.clone());
                    }
                    dets.push(d);
                }
            }
            for _ in 0..rng.below(3) {
                let a = rng.below(900) as f64;
                let b = rng.below(900) as f64;
                dets.push(format!(
                    r#"{{"label": "{}", "box_2d": [{a}, {b}, {}, {}]}}"#,
                    COCO_NAMES[classes[rng.below(8) as usize] as usize],
                    a + 100.0,
                    b + 100.0
                ));
            }
            let objects: Vec<([f64; 4], i64)> = objects;
            image(w, h, &objects, &format!("[{}]", dets.join(", ")))
        })
        .collect()
}

fn run_reference(python: &Path, case: &Value) -> Value {
    let script =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tools/reference/coco_metrics_reference.py");
    let mut child = Command::new(python)
        .arg(script)
        .env("NPY_DISABLE_CPU_FEATURES", "X86_V4 X86_V3")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cannot start the reference python");
    serde_json::to_writer(child.stdin.take().unwrap(), case).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "coco_metrics_reference.py failed: {}",
        text(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("the reference printed bad JSON")
}

/// A Python `repr(float)` from the reference, exactly.
fn f(v: &Value) -> f64 {
    v.as_str()
        .expect("floats come as repr strings")
        .parse()
        .unwrap()
}

fn objects_of(img: &Value) -> Vec<GtObject> {
    let boxes = img["objects"]["bbox"].as_array().unwrap();
    let cats = img["objects"]["category"].as_array().unwrap();
    boxes
        .iter()
        .zip(cats)
        .map(|(b, c)| {
            let v: Vec<f64> = b
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap())
                .collect();
            GtObject {
                bbox: [v[0], v[1], v[2], v[3]],
                category: c.as_i64().unwrap(),
            }
        })
        .collect()
}

fn compare_case(python: &Path, name: &str, images: Vec<Value>) {
    let vqa = [
        ("La Brea Ave.", "la brea ave"),
        ("Two elephants", "2"),
        (" yes. ", "Yes"),
        ("3 people", "3"),
        ("White", "white"),
        ("", ""),
        ("no..", "no"),
        ("...", ""),
        ("N/A", "n/a"),
    ];
    let case = json!({"categories": COCO_NAMES.to_vec(), "images": images, "vqa": vqa});
    let reference = run_reference(python, &case);
    let categories = Categories::new(COCO_NAMES.iter().map(|s| s.to_string()).collect());

    let mut gts = Vec::new();
    let mut evals = Vec::new();
    for (i, (img, want)) in images_of(&case)
        .iter()
        .zip(reference["images"].as_array().unwrap())
        .enumerate()
    {
        let at = format!("{name} image {i}");
        let gt = ground_truth(&objects_of(img), &categories);
        let size = ImageSize::new(
            img["width"].as_u64().unwrap() as u32,
            img["height"].as_u64().unwrap() as u32,
        );
        let preds = parse_predictions(img["response"].as_str().unwrap(), size, &categories);
        let rows = |v: &Value| -> Vec<Vec<f64>> {
            v.as_array()
                .unwrap()
                .iter()
                .map(|r| r.as_array().unwrap().iter().map(f).collect())
                .collect()
        };
        let ours = |d: &[vlmbench::eval::detection::Detection]| -> Vec<Vec<f64>> {
            d.iter()
                .map(|d| d.xyxy.iter().map(|&v| f64::from(v)).collect())
                .collect()
        };
        assert_eq!(
            ours(&gt),
            rows(&want["gt_xyxy"]),
            "{at}: ground-truth boxes"
        );
        assert_eq!(
            ours(&preds),
            rows(&want["pred_xyxy"]),
            "{at}: predicted boxes"
        );
        let labels = |v: &Value| -> Vec<String> {
            v.as_array()
                .unwrap()
                .iter()
                .map(|s| s.as_str().unwrap().to_string())
                .collect()
        };
        assert_eq!(
            gt.iter().map(|d| d.class_name.clone()).collect::<Vec<_>>(),
            labels(&want["gt_labels"]),
            "{at}: gt labels"
        );
        assert_eq!(
            preds
                .iter()
                .map(|d| d.class_name.clone())
                .collect::<Vec<_>>(),
            labels(&want["pred_labels"]),
            "{at}: pred labels"
        );
        let e = evaluate(&preds, &gt);
        for (key, ours) in [
            ("precision", e.precision),
            ("recall", e.recall),
            ("f1", e.f1),
            ("strict_precision", e.strict_precision),
            ("strict_recall", e.strict_recall),
            ("strict_f1", e.strict_f1),
            ("mean_tp_iou", e.mean_tp_iou),
        ] {
            assert_eq!(
                ours.to_bits(),
                f(&want[key]).to_bits(),
                "{at}: {key} {ours} vs {}",
                want[key]
            );
        }
        assert_eq!(
            (e.tp, e.n_pred, e.n_gt),
            (
                want["tp"].as_u64().unwrap() as usize,
                want["n_pred"].as_u64().unwrap() as usize,
                want["n_gt"].as_u64().unwrap() as usize
            ),
            "{at}: counts"
        );
        assert_eq!(
            e.pred_display_labels,
            labels(&want["pred_display_labels"]),
            "{at}: display labels"
        );
        assert_eq!(
            e.pred_status
                .iter()
                .map(|s| s.key().to_string())
                .collect::<Vec<_>>(),
            labels(&want["pred_status"]),
            "{at}: statuses"
        );
        let idx = |v: &Value| -> Vec<usize> {
            v.as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_u64().unwrap() as usize)
                .collect()
        };
        assert_eq!(
            e.matched_gt_indices,
            idx(&want["matched_gt_indices"]),
            "{at}: coarse matched gt"
        );
        assert_eq!(
            e.strict_matched_gt_indices,
            idx(&want["strict_matched_gt_indices"]),
            "{at}: strict matched gt"
        );
        assert_eq!(
            e.strict_tp_mask,
            want["strict_tp_mask"]
                .as_array()
                .unwrap()
                .iter()
                .map(|b| b.as_bool().unwrap())
                .collect::<Vec<_>>(),
            "{at}: strict tp mask"
        );
        assert_eq!(
            e.tp_ious.iter().map(|&v| f64::from(v)).collect::<Vec<_>>(),
            want["tp_ious"]
                .as_array()
                .unwrap()
                .iter()
                .map(f)
                .collect::<Vec<_>>(),
            "{at}: tp ious"
        );
        let counts = &want["status_counts"];
        assert_eq!(
            e.status_counts.to_vec(),
            ["tp", "near", "class", "fp"]
                .map(|k| counts[k].as_u64().unwrap() as usize)
                .to_vec(),
            "{at}: status counts"
        );
        gts.push(gt);
        evals.push(e);
    }

    let scored: Vec<ScoredImage> = evals
        .iter()
        .zip(&gts)
        .map(|(e, g)| ScoredImage {
            eval: e,
            ground_truth: g,
            time_s: 1.5,
        })
        .collect();
    let s = coco_summary(&scored);
    let want = &reference["summary"];
    for (key, ours) in [
        ("precision", s.precision),
        ("recall", s.recall),
        ("f1", s.f1),
        ("strict_precision", s.strict_precision),
        ("strict_recall", s.strict_recall),
        ("strict_f1", s.strict_f1),
        ("mean_tp_iou", s.mean_tp_iou),
        ("avg_time_s", s.avg_time_s),
    ] {
        assert_eq!(
            ours.to_bits(),
            f(&want[key]).to_bits(),
            "{name} summary {key}: {ours} vs {}",
            want[key]
        );
    }
    assert_eq!(
        [s.total_tp, s.total_pred, s.total_gt],
        ["total_tp", "total_pred", "total_gt"].map(|k| want[k].as_u64().unwrap() as usize),
        "{name} totals"
    );
    assert_eq!(
        s.status_totals,
        ["tp", "near", "class", "fp"].map(|k| want["status_totals"][k].as_u64().unwrap() as usize),
        "{name} status totals"
    );
    let per_class: Vec<(String, usize, usize, u64)> = s
        .per_class_recall
        .iter()
        .map(|c| (c.name.clone(), c.matched, c.total, c.recall.to_bits()))
        .collect();
    let want_per_class: Vec<(String, usize, usize, u64)> = want["per_class"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r[0].as_str().unwrap().to_string(),
                r[1].as_u64().unwrap() as usize,
                r[2].as_u64().unwrap() as usize,
                f(&r[3]).to_bits(),
            )
        })
        .collect();
    assert_eq!(per_class, want_per_class, "{name} per-class recall");
    assert_eq!(
        s.best_index,
        Some(want["best_index"].as_u64().unwrap() as usize),
        "{name} best image"
    );
    assert_eq!(
        s.worst_index,
        Some(want["worst_index"].as_u64().unwrap() as usize),
        "{name} worst image"
    );

    let ours_vqa: Vec<f64> = vqa.iter().map(|(p, g)| vqa_exact_match(p, g)).collect();
    let want_vqa: Vec<f64> = reference["vqa"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    assert_eq!(ours_vqa, want_vqa, "vqa_exact_match");
}

fn images_of(case: &Value) -> Vec<Value> {
    case["images"].as_array().unwrap().clone()
}

#[test]
fn hand_made_edge_cases_match_the_notebooks_metric_code() {
    let Some(python) = reference_python() else {
        return;
    };
    compare_case(&python, "hand-made", hand_made());
}

#[test]
fn generated_images_match_the_notebooks_metric_code() {
    let Some(python) = reference_python() else {
        return;
    };
    compare_case(&python, "generated", generated(300));
}

#[test]
fn every_image_scoring_zero_picks_the_first_as_best_and_worst_like_numpy() {
    let Some(python) = reference_python() else {
        return;
    };
    let images = vec![image(100, 100, &[([0.0, 0.0, 50.0, 50.0], 0)], "[]"); 3];
    compare_case(&python, "all-zero", images);
}
