use std::path::PathBuf;

use anyhow::{bail, Result};
use clap::Args;

use crate::eval::{scene_tasks, scenes};

/// Write synthetic scenes with ground truth as evaluation datasets (VQA and COCO layouts).
///
/// Shapes (circle, square, triangle, star) in named colours on plain, striped or photo
/// backgrounds, drawn from a seed: the same seed writes the same files. Each scene comes with its
/// caption, questions with one right answer (counts, colours, shapes, yes/no), boxes, points and
/// polygons. `OUT/vqa` and `OUT/coco` are in the published layouts of the notebook's datasets, so
/// `vlmbench eval vqa --data OUT/vqa` and `vlmbench eval coco --data OUT/coco` read them as they
/// are; `OUT/scenes.jsonl` holds everything.
#[derive(Debug, Args)]
pub struct MakeScenesArgs {
    /// Folder to write into (created if missing).
    pub out_dir: PathBuf,
    /// How many scenes (the VQA set has a row per question, about 3.5 a scene; the notebook's
    /// selection keeps one row in 20).
    #[arg(long, default_value_t = 300, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub scenes: u32,
    /// Seed of the scenes.
    #[arg(long, default_value_t = 0)]
    pub seed: u32,
    /// Also write the training pairs of the built-in demo model: `OUT/images/*.jpg` and
    /// `OUT/pairs.jsonl` (every task's prompt about each scene with the answer its ground truth
    /// gives).
    #[arg(long)]
    pub training: bool,
    /// Write into a non-empty folder, replacing files of the same names (others are kept).
    #[arg(long)]
    pub force: bool,
}

pub fn run(args: &MakeScenesArgs) -> Result<()> {
    let out = &args.out_dir;
    let non_empty = std::fs::read_dir(out).is_ok_and(|mut d| d.next().is_some());
    if non_empty && !args.force {
        bail!(
            "{} is not empty: pick an empty folder, or pass --force to replace files of the same names",
            out.display()
        );
    }
    let set = scenes::SceneSet::draw(args.seed, args.scenes as usize)?;
    let mut written = scenes::write_scene_sets(out, &set)?;
    if args.training {
        written
            .files
            .push(scene_tasks::write_training_pairs(out, &set)?);
    }
    println!(
        "wrote {} scenes (seed {}): {} VQA rows, {} COCO objects in {} classes",
        written.scenes,
        args.seed,
        written.vqa_rows,
        written.coco_objects,
        scenes::SHAPES.len()
    );
    for f in &written.files {
        println!("  {}", f.display());
    }
    println!(
        "evaluate with: vlmbench eval vqa --data {0}/vqa   and   vlmbench eval coco --data {0}/coco",
        out.display()
    );
    Ok(())
}
