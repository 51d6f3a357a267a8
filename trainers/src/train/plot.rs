//! `training_loss.png` (and `training_eval_loss.png`, ...): LLaMA-Factory's `plot_loss` drawn
//! with plotters: for each key found in the log history, the raw curve (alpha 0.4) and
//! TensorBoard's EMA smoothing with LF's sigmoid weight, 640x480 like matplotlib's default
//! figure at dpi 100. The font (DejaVu Sans, `assets/`) is embedded so text renders anywhere.

use std::path::Path;
use std::sync::Once;

use plotters::prelude::*;

use crate::template::pyjson::PyJson;
use crate::{Error, Result};

static FONT: &[u8] = include_bytes!("../../assets/DejaVuSans.ttf");
static REGISTER: Once = Once::new();

/// matplotlib's default color `#1f77b4`.
const BLUE: RGBColor = RGBColor(0x1f, 0x77, 0xb4);

/// LLaMA-Factory `smooth`: EMA with weight `1.8 · (sigmoid(0.05 · n) − 0.5)`.
pub fn smooth(scalars: &[f64]) -> Vec<f64> {
    let Some(&first) = scalars.first() else {
        return vec![];
    };
    let weight = 1.8 * (1.0 / (1.0 + (-0.05 * scalars.len() as f64).exp()) - 0.5);
    let mut last = first;
    scalars
        .iter()
        .map(|&x| {
            last = last * weight + (1.0 - weight) * x;
            last
        })
        .collect()
}

/// The `(step, value)` points of `key` in the log history.
pub fn series(history: &[PyJson], key: &str) -> Vec<(f64, f64)> {
    history
        .iter()
        .filter_map(|h| {
            let v = match h.get(key)? {
                PyJson::Float(f) => *f,
                PyJson::Int(i) => *i as f64,
                _ => return None,
            };
            let s = match h.get("step")? {
                PyJson::Int(i) => *i as f64,
                _ => return None,
            };
            Some((s, v))
        })
        .collect()
}

/// Draws `training_{key}.png` into `dir` for every key with points (`/` in a key becomes `_`).
pub fn plot_loss(dir: &Path, history: &[PyJson], keys: &[String]) -> Result<()> {
    REGISTER.call_once(|| {
        let _ = plotters::style::register_font("sans-serif", FontStyle::Normal, FONT);
    });
    for key in keys {
        let pts = series(history, key);
        if pts.is_empty() {
            continue;
        }
        let path = dir.join(format!("training_{}.png", key.replace('/', "_")));
        draw(
            &path,
            &pts,
            key,
            &format!("training {key} of {}", dir.display()),
        )
        .map_err(|e| Error::Msg(format!("{}: {e}", path.display())))?;
    }
    Ok(())
}

fn draw(
    path: &Path,
    pts: &[(f64, f64)],
    key: &str,
    title: &str,
) -> std::result::Result<(), Box<dyn std::error::Error>> {
    // Draw into a temp file and rename, like every other output.
    let tmp = path.with_file_name(format!(
        ".tmp-{}",
        path.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    ));
    {
        let root = BitMapBackend::new(&tmp, (640, 480)).into_drawing_area();
        root.fill(&WHITE)?;
        let (x0, x1) = (pts[0].0, pts[pts.len() - 1].0.max(pts[0].0 + 1.0));
        let smoothed = smooth(&pts.iter().map(|p| p.1).collect::<Vec<_>>());
        let lo = pts.iter().map(|p| p.1).fold(f64::INFINITY, f64::min);
        let hi = pts.iter().map(|p| p.1).fold(f64::NEG_INFINITY, f64::max);
        let pad = ((hi - lo) * 0.05).max(1e-6);
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 14))
            .margin(10)
            .x_label_area_size(40)
            .y_label_area_size(50)
            .build_cartesian_2d(x0..x1, (lo - pad)..(hi + pad))?;
        chart
            .configure_mesh()
            .disable_mesh()
            .x_desc("step")
            .y_desc(key)
            .label_style(("sans-serif", 12))
            .draw()?;
        chart
            .draw_series(LineSeries::new(pts.iter().copied(), BLUE.mix(0.4)))?
            .label("original")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLUE.mix(0.4)));
        chart
            .draw_series(LineSeries::new(pts.iter().map(|p| p.0).zip(smoothed), BLUE))?
            .label("smoothed")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLUE));
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK.mix(0.2))
            .label_font(("sans-serif", 12))
            .draw()?;
        root.present()?;
    }
    std::fs::rename(&tmp, path)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smoothing_matches_llamafactory_formula() {
        // n = 2: weight = 1.8 * (1/(1+e^-0.1) - 0.5).
        let w = 1.8 * (1.0 / (1.0 + (-0.1f64).exp()) - 0.5);
        let s = smooth(&[1.0, 3.0]);
        assert_eq!(s[0], 1.0);
        assert!((s[1] - (w + (1.0 - w) * 3.0)).abs() < 1e-15);
        assert!(smooth(&[]).is_empty());
    }

    #[test]
    fn writes_a_png_per_key_with_points() {
        let dir = std::env::temp_dir().join(format!("lmf-plot-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let hist: Vec<PyJson> = (1..=5)
            .map(|s| {
                PyJson::Dict(vec![
                    ("loss".into(), PyJson::Float(3.0 / s as f64)),
                    ("step".into(), PyJson::Int(s)),
                ])
            })
            .collect();
        plot_loss(&dir, &hist, &["loss".into(), "eval_loss".into()]).unwrap();
        let png = std::fs::read(dir.join("training_loss.png")).unwrap();
        assert_eq!(&png[1..4], b"PNG");
        assert!(!dir.join("training_eval_loss.png").exists());
        std::fs::remove_dir_all(&dir).ok();
    }
}
