//! `splitlm report`: the MP / AP / DCS table of an experiment from its JSON-lines records, and
//! a plot of MP against AP per attack, one point per defense setting (SVG).
//!
//! An experiment is every record of one run name. For each defense setting the latest
//! training run counts, with the attacks mounted on it (tied by `run_id`); the DCS of a
//! setting compares its MP with the latest undefended run's (docs/ARCHITECTURE.md, "Scores").

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Result, bail};
use plotters::prelude::*;

use crate::defense_scores::{c_dcs, dcs, t_dcs};
use splitlm_attacks::score::AttackScores;

use crate::records::{AttackRecord, Record, TrainRecord};

/// The weight of MP loss against attack success in the DCS (the reference's β).
pub const BETA: f64 = 0.5;

/// One attack's result in a row.
#[derive(Debug, Clone, PartialEq)]
pub struct AttackCell {
    /// The attack.
    pub name: String,
    /// `inversion` or `label_inference`.
    pub kind: String,
    /// Its attack performance.
    pub ap: f64,
    /// An inversion's bag-of-tokens precision (its AP is the recall).
    pub precision: Option<f64>,
    /// The defense capability score (when the experiment has an undefended run).
    pub dcs: Option<f64>,
}

/// One defense setting of an experiment.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// The defense setting's label.
    pub setting: String,
    /// Whether it applies no defense.
    pub undefended: bool,
    /// Main-task performance after training.
    pub mp: f64,
    /// The MP metric's name.
    pub metric: String,
    /// The attacks mounted on it, in record order.
    pub attacks: Vec<AttackCell>,
    /// T-DCS per attack type.
    pub t_dcs: BTreeMap<String, f64>,
    /// C-DCS: the mean of the T-DCS values.
    pub c_dcs: Option<f64>,
}

/// The rows of one experiment.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    /// The experiment (run name).
    pub experiment: String,
    /// MP of the undefended run, if any.
    pub baseline_mp: Option<f64>,
    /// One row per defense setting, in the order they first appear.
    pub rows: Vec<Row>,
}

/// Builds the report of `experiment` (default: the experiment of the last training record).
pub fn build(records: &[Record], experiment: Option<&str>) -> Result<Report> {
    let trains: Vec<&TrainRecord> = records.iter().filter_map(Record::as_train).collect();
    let experiment = match experiment {
        Some(name) => name.to_string(),
        None => match trains.last() {
            Some(r) => r.setting.name.clone(),
            None => bail!("the records hold no training run"),
        },
    };
    // The latest training run of each defense setting, in order of first appearance.
    let mut order: Vec<String> = Vec::new();
    let mut latest: BTreeMap<String, &TrainRecord> = BTreeMap::new();
    for record in trains.iter().filter(|r| r.setting.name == experiment) {
        let setting = record.setting.defense_setting.clone();
        if !latest.contains_key(&setting) {
            order.push(setting.clone());
        }
        latest.insert(setting, record);
    }
    if order.is_empty() {
        bail!("no training run named \"{experiment}\" in the records");
    }
    let undefended = |r: &TrainRecord| r.setting.defenses.is_empty();
    let baseline_mp = order
        .iter()
        .map(|s| latest[s])
        .rfind(|r| undefended(r))
        .map(|r| r.mp);
    let runs: Vec<&str> = order.iter().map(|s| latest[s].run_id.as_str()).collect();
    let label = attack_labels(
        records
            .iter()
            .filter_map(Record::as_attack)
            .filter(|r| !r.run_id.is_empty() && runs.contains(&r.run_id.as_str())),
    );
    let mut rows = Vec::new();
    for setting in order {
        let train = latest[&setting];
        let mp = train.mp;
        if !mp.is_finite() {
            bail!("setting \"{setting}\": the record's mp is {mp}");
        }
        let attacks: Vec<AttackCell> = records
            .iter()
            .filter_map(Record::as_attack)
            .filter(|r| !train.run_id.is_empty() && r.run_id == train.run_id)
            .map(|r| AttackCell {
                name: label(r),
                kind: r.attack.kind.name().to_string(),
                ap: r.ap,
                precision: match r.attack_scores {
                    Some(AttackScores::Inversion(s)) => Some(s.precision),
                    _ => None,
                },
                dcs: baseline_mp.map(|base| dcs(r.ap, mp, base, BETA)),
            })
            .collect();
        let mut by_kind: BTreeMap<String, Vec<f64>> = BTreeMap::new();
        for cell in &attacks {
            if let Some(d) = cell.dcs {
                by_kind.entry(cell.kind.clone()).or_default().push(d);
            }
        }
        let t_dcs: BTreeMap<String, f64> = by_kind
            .into_iter()
            .filter_map(|(kind, values)| t_dcs(&values).map(|t| (kind, t)))
            .collect();
        let weighted: Vec<(f64, f64)> = t_dcs.values().map(|&t| (1.0, t)).collect();
        rows.push(Row {
            undefended: undefended(train),
            setting,
            mp,
            metric: train.after.metric.clone(),
            attacks,
            c_dcs: c_dcs(&weighted),
            t_dcs,
        });
    }
    Ok(Report {
        experiment,
        baseline_mp,
        rows,
    })
}

/// Column names for `attacks`: an attack's name, or, where the experiment runs one attack with
/// several settings, its name followed by the settings that tell them apart
/// (`vmi objective=mse`).
fn attack_labels<'a>(
    attacks: impl Iterator<Item = &'a AttackRecord>,
) -> impl Fn(&AttackRecord) -> String {
    let settings = |r: &AttackRecord| match serde_json::to_value(&r.attack.params) {
        Ok(serde_json::Value::Object(map)) => map,
        _ => serde_json::Map::new(),
    };
    let mut variants: BTreeMap<String, Vec<serde_json::Map<String, serde_json::Value>>> =
        BTreeMap::new();
    for r in attacks {
        let found = variants.entry(r.attack.name.clone()).or_default();
        let these = settings(r);
        if !found.contains(&these) {
            found.push(these);
        }
    }
    move |r: &AttackRecord| {
        let name = r.attack.name.clone();
        let Some(all) = variants.get(&name).filter(|v| v.len() > 1) else {
            return name;
        };
        let these = settings(r);
        let differing: Vec<String> = these
            .iter()
            .filter(|(key, value)| all.iter().any(|other| other.get(*key) != Some(*value)))
            .map(|(key, value)| match value {
                serde_json::Value::String(text) => format!("{key}={text}"),
                other => format!("{key}={other}"),
            })
            .collect();
        format!("{name} {}", differing.join(" "))
    }
}

impl Report {
    /// Attack names in order of first appearance.
    fn attack_names(&self) -> Vec<String> {
        let mut names: Vec<String> = Vec::new();
        for cell in self.rows.iter().flat_map(|r| &r.attacks) {
            if !names.contains(&cell.name) {
                names.push(cell.name.clone());
            }
        }
        names
    }

    /// The table as text: one row per setting, AP and DCS per attack, T-DCS per type, C-DCS.
    pub fn table(&self) -> String {
        let names = self.attack_names();
        let kinds: Vec<String> = {
            let mut k: Vec<String> = self
                .rows
                .iter()
                .flat_map(|r| r.t_dcs.keys().cloned())
                .collect();
            k.sort();
            k.dedup();
            k
        };
        let metric = self
            .rows
            .first()
            .map(|r| r.metric.clone())
            .unwrap_or_default();
        let mut header = vec!["defense setting".to_string(), format!("MP ({metric})")];
        let inverts = |name: &String| {
            self.rows
                .iter()
                .flat_map(|r| &r.attacks)
                .any(|c| &c.name == name && c.precision.is_some())
        };
        for name in &names {
            header.push(format!("{name} AP"));
            if inverts(name) {
                header.push(format!("{name} precision"));
            }
            header.push(format!("{name} DCS"));
        }
        for kind in &kinds {
            header.push(format!("T-DCS {kind}"));
        }
        header.push("C-DCS".into());
        let cell = |v: Option<f64>| v.map_or("–".to_string(), |v| format!("{v:.4}"));
        let mut lines = vec![header];
        for row in &self.rows {
            let mut line = vec![row.setting.clone(), format!("{:.4}", row.mp)];
            for name in &names {
                let found = row.attacks.iter().rfind(|c| &c.name == name);
                line.push(cell(found.map(|c| c.ap)));
                if inverts(name) {
                    line.push(cell(found.and_then(|c| c.precision)));
                }
                line.push(cell(found.and_then(|c| c.dcs)));
            }
            for kind in &kinds {
                line.push(cell(row.t_dcs.get(kind).copied()));
            }
            line.push(cell(row.c_dcs));
            lines.push(line);
        }
        let columns = lines[0].len();
        let widths: Vec<usize> = (0..columns)
            .map(|c| {
                lines
                    .iter()
                    .map(|l| l[c].chars().count())
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let title = format!("splitlm report · {}", self.experiment);
        let mut out = format!("\n{title}\n{}\n", "─".repeat(title.chars().count()));
        for (i, line) in lines.iter().enumerate() {
            let cells: Vec<String> = line
                .iter()
                .zip(&widths)
                .enumerate()
                .map(|(c, (v, w))| {
                    if c == 0 {
                        format!("{v:<w$}")
                    } else {
                        format!("{v:>w$}")
                    }
                })
                .collect();
            out.push_str(cells.join("  ").trim_end());
            out.push('\n');
            if i == 0 {
                out.push_str(&"─".repeat(widths.iter().sum::<usize>() + 2 * (columns - 1)));
                out.push('\n');
            }
        }
        match self.baseline_mp {
            Some(mp) => out.push_str(&format!(
                "DCS = 1 / (1 + √((1−β)·AP² + β·ΔMP²)), β = {BETA}, ΔMP against the undefended MP {mp:.4}\n"
            )),
            None => out.push_str("no undefended run: DCS needs one\n"),
        }
        out
    }

    /// Writes the MP-against-AP plot as SVG to `path` (through a temporary file, so a failed
    /// write leaves an earlier plot intact).
    pub fn plot(&self, path: &Path) -> Result<()> {
        let names = self.attack_names();
        if names.is_empty() {
            bail!("no attack records to plot for \"{}\"", self.experiment);
        }
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| anyhow::anyhow!("creating {}: {e}", dir.display()))?;
        }
        let partial = path.with_extension("svg.partial");
        self.draw(&partial, &names)
            .map_err(|e| anyhow::anyhow!("drawing {}: {e:#}", partial.display()))?;
        std::fs::rename(&partial, path)
            .map_err(|e| anyhow::anyhow!("moving the plot to {}: {e}", path.display()))?;
        Ok(())
    }

    fn draw(&self, path: &Path, names: &[String]) -> Result<()> {
        let mps = self.rows.iter().map(|r| r.mp);
        let (lo, hi) = mps.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
            (lo.min(v), hi.max(v))
        });
        let pad = ((hi - lo) * 0.15).max(0.02);
        let (y0, y1) = ((lo - pad).max(0.0), (hi + pad).min(1.0).max(lo + pad));
        let root = SVGBackend::new(path, (900, 620)).into_drawing_area();
        root.fill(&WHITE).map_err(drawing)?;
        let metric = self
            .rows
            .first()
            .map(|r| r.metric.clone())
            .unwrap_or_default();
        let mut chart = ChartBuilder::on(&root)
            .caption(
                format!(
                    "{}: main-task performance against attack performance",
                    self.experiment
                ),
                ("sans-serif", 20),
            )
            .margin(16)
            .x_label_area_size(44)
            .y_label_area_size(60)
            .build_cartesian_2d(-0.02f64..1.02f64, y0..y1)
            .map_err(drawing)?;
        chart
            .configure_mesh()
            .x_desc("AP (attack performance: inversion recall, label recovery)")
            .y_desc(format!("MP ({metric})"))
            .draw()
            .map_err(drawing)?;
        // One label per setting, above its left-most point; its attacks' points share its MP
        // and are joined by a faint line.
        for row in &self.rows {
            let aps: Vec<f64> = row.attacks.iter().map(|c| c.ap).collect();
            let (left, right) = aps
                .iter()
                .fold((f64::INFINITY, f64::NEG_INFINITY), |(l, r), &a| {
                    (l.min(a), r.max(a))
                });
            if !left.is_finite() {
                continue;
            }
            chart
                .draw_series(LineSeries::new(
                    [(left, row.mp), (right, row.mp)],
                    BLACK.mix(0.25),
                ))
                .map_err(drawing)?;
            chart
                .draw_series(std::iter::once(
                    EmptyElement::at((left, row.mp))
                        + Text::new(row.setting.clone(), (-4, -18), ("sans-serif", 12)),
                ))
                .map_err(drawing)?;
        }
        for (i, name) in names.iter().enumerate() {
            let color = Palette99::pick(i).to_rgba();
            // Later attacks draw smaller, so points that coincide (same AP) all stay visible.
            let radius = 8u32.saturating_sub(i as u32).max(3);
            let points: Vec<(f64, f64)> = self
                .rows
                .iter()
                .filter_map(|r| {
                    r.attacks
                        .iter()
                        .rfind(|c| &c.name == name)
                        .map(|c| (c.ap, r.mp))
                })
                .collect();
            chart
                .draw_series(
                    points
                        .iter()
                        .map(|&(ap, mp)| Circle::new((ap, mp), radius, color.filled())),
                )
                .map_err(drawing)?
                .label(name.clone())
                .legend(move |(x, y)| Circle::new((x, y), radius, color.filled()));
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()
            .map_err(drawing)?;
        root.present().map_err(drawing)?;
        Ok(())
    }
}

/// plotters' drawing errors as `anyhow` errors.
fn drawing(e: impl std::fmt::Display) -> anyhow::Error {
    anyhow::anyhow!("{e}")
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

    fn record(value: Value) -> Record {
        serde_json::from_value(value).unwrap()
    }

    fn train(run: &str, setting: &str, defenses: Value, mp: f64) -> Record {
        record(
            json!({"job": "train", "name": "exp", "run_id": run, "defense_setting": setting,
               "defenses": defenses, "mp": mp, "after": {"metric": "accuracy"}}),
        )
    }

    fn attack(run: &str, name: &str, kind: &str, ap: f64) -> Record {
        record(
            json!({"job": "attack", "name": "exp", "run_id": run, "ap": ap,
               "attack": {"name": name, "kind": kind}}),
        )
    }

    fn records() -> Vec<Record> {
        vec![
            // An older undefended run, superseded by the later one.
            train("0", "none", json!([]), 0.5),
            attack("0", "vmi", "inversion", 0.1),
            train("1", "none", json!([]), 0.8),
            attack("1", "vmi", "inversion", 1.0),
            attack("1", "rwi", "inversion", 0.8),
            train(
                "2",
                "dp",
                json!([{"kind": "laplace_dp", "epsilon": 5.0, "sensitivity": 1.0, "target": "activations"}]),
                0.7,
            ),
            record(
                json!({"job": "attack", "name": "exp", "run_id": "2", "ap": 0.2,
               "attack": {"name": "vmi", "kind": "inversion"},
               "attack_scores": {"precision": 0.125, "recall": 0.2, "rouge_l_f1": 0.1,
                                 "exact_match": 0.0, "samples": 4}}),
            ),
            attack("2", "rwi", "inversion", 0.4),
            record(json!({"job": "train", "name": "other", "run_id": "3", "mp": 0.1})),
        ]
    }

    #[test]
    fn one_attack_with_several_settings_gets_a_column_per_setting() {
        let vmi = |run: &str, objective: &str, ap: f64| {
            record(
                json!({"job": "attack", "name": "exp", "run_id": run, "ap": ap,
               "attack": {"name": "vmi", "kind": "inversion",
                          "params": {"kind": "vmi", "objective": objective}}}),
            )
        };
        let records = vec![
            train("1", "none", json!([]), 0.8),
            vmi("1", "cross_entropy", 0.1),
            vmi("1", "mse", 0.7),
            attack("1", "rwi", "inversion", 0.5),
        ];
        let report = build(&records, Some("exp")).unwrap();
        let names: Vec<&str> = report.rows[0]
            .attacks
            .iter()
            .map(|c| c.name.as_str())
            .collect();
        assert_eq!(
            names,
            ["vmi objective=cross_entropy", "vmi objective=mse", "rwi"]
        );
        let table = report.table();
        assert!(table.contains("vmi objective=mse AP"), "{table}");
    }

    #[test]
    fn rows_take_the_latest_run_per_setting_and_score_against_the_undefended_one() {
        let report = build(&records(), Some("exp")).unwrap();
        assert_eq!(report.baseline_mp, Some(0.8));
        assert_eq!(report.rows.len(), 2);
        let none = &report.rows[0];
        assert_eq!((none.setting.as_str(), none.mp), ("none", 0.8));
        let vmi = &none.attacks[0];
        assert_eq!(vmi.ap, 1.0);
        assert!((vmi.dcs.unwrap() - 1.0 / (1.0 + 0.5f64.sqrt())).abs() < 1e-12);
        let dp = &report.rows[1];
        // Literals from the definition (computed by hand): 1/(1+√(0.5·0.2² + 0.5·0.1²)), …
        assert!((dp.attacks[0].dcs.unwrap() - 0.863_472_940_504_185_7).abs() < 1e-12);
        assert!((dp.attacks[1].dcs.unwrap() - 0.774_264_923_778_945_4).abs() < 1e-12);
        let t = 0.818_868_932_141_565_5;
        assert!((dp.t_dcs["inversion"] - t).abs() < 1e-12);
        assert!((dp.c_dcs.unwrap() - t).abs() < 1e-12);
        let table = report.table();
        assert!(
            table.contains("vmi AP") && table.contains("T-DCS inversion"),
            "{table}"
        );
        assert!(
            table.contains("0.2000") && table.contains("0.5858"),
            "{table}"
        );
        // Inversions recorded with their scores show precision beside the AP (recall).
        assert_eq!(dp.attacks[0].precision, Some(0.125));
        assert!(
            table.contains("vmi precision") && table.contains("0.1250"),
            "{table}"
        );
        assert!(!table.contains("rwi precision"), "{table}");
        // The default experiment is that of the last training record.
        assert_eq!(build(&records(), None).unwrap().experiment, "other");
        let err = build(&records(), Some("missing")).unwrap_err().to_string();
        assert!(err.contains("missing"), "{err}");
    }

    #[test]
    fn the_plot_is_an_svg_with_a_point_per_setting_and_attack() {
        let report = build(&records(), Some("exp")).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("plots/exp.svg");
        report.plot(&path).unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        assert!(svg.starts_with("<svg"), "{}", &svg[..40]);
        assert_eq!(
            svg.matches("<circle").count(),
            4 + 2,
            "4 points and 2 legend marks"
        );
        let texts: Vec<&str> = svg.lines().map(str::trim).collect();
        assert!(texts.contains(&"dp") && texts.contains(&"vmi"), "{svg}");
        assert!(!dir.path().join("plots/exp.svg.partial").exists());
    }
}
