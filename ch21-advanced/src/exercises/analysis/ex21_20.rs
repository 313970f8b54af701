//! Exercise 21.20: the learned position embeddings of a pretrained model against the
//! sinusoidal table of the same size ("Attention Is All You Need"). For each table: the
//! cosine similarity of every pair of positions (a heatmap), a principal component analysis
//! to two dimensions (our own: the eigenvectors of the covariance matrix, from LibTorch's
//! `linalg_eigh`; a scatter coloured by position), and the observations as numbers: the mean
//! similarity of positions `d` apart for `d = 1, 2, 4, ...` (one chart for both tables), the
//! share of the variance the two components hold, and how well the first follows the
//! position (Pearson's correlation).

use std::fmt;
use std::path::PathBuf;

use anyhow::{anyhow, Result};
use serde::Serialize;
use shared::app::cli::RunContext;
use shared::app::exercise::Report;

use crate::exercises::Exercise;
use shared::app::plot::{write_grid, Chart, Figure, Heatmap, Scatter, Series, PALETTE};
use shared::core::tensors::rows_f64;
use shared::model::positions::sinusoidal_table;
use tch::{Kind, Tensor};

use crate::models::Model;
use crate::pretrained::{subject, Pretraining};

pub const EXERCISE: Exercise = Exercise {
    id: "21.20",
    summary: "the pretrained model's learned position embeddings against a sinusoidal table of the same size: cosine similarity of all positions (heatmap), PCA to 2-D (scatter), similarity against distance",
    run: |context| Report::new(&run(context, &subject(context, &context.flags, &Pretraining::standard())?)?),
};

/// What one table shows.
#[derive(Debug, Clone, Serialize)]
pub struct TableAnalysis {
    pub name: String,
    /// `(d, mean cosine similarity of positions d apart)` for d = 1, 2, 4, ...
    pub similarity_by_distance: Vec<(usize, f64)>,
    /// Shares of the variance along the first two principal components.
    pub explained_variance: [f64; 2],
    /// Pearson's correlation of the first component with the position.
    pub first_component_vs_position: f64,
    pub figure: PathBuf,
}

#[derive(Debug, Clone, Serialize)]
pub struct Ex21_20 {
    pub model: String,
    pub positions: i64,
    pub dim: i64,
    pub tables: Vec<TableAnalysis>,
    pub distance_figure: PathBuf,
}

/// The cosine similarity of every pair of rows of `table` `(P, D)`: `(P, P)`.
pub fn cosine_similarities(table: &Tensor) -> Tensor {
    let norms = table.norm_scalaropt_dim(2, [1], true).clamp_min(1e-12);
    let unit = table / norms;
    unit.matmul(&unit.transpose(0, 1))
}

/// The rows of `table` `(P, D)` projected on its first two principal components `(P, 2)`, and
/// the share of the variance along each.
pub fn principal_components(table: &Tensor) -> (Tensor, [f64; 2]) {
    let x = table.to_kind(Kind::Double);
    let centred = &x - x.mean_dim([0i64].as_slice(), true, Kind::Double);
    let covariance = centred.transpose(0, 1).matmul(&centred) / (x.size()[0] - 1).max(1) as f64;
    // Eigenvalues in ascending order: the last two columns are the components.
    let (values, vectors) = covariance.linalg_eigh("L");
    let dim = values.size()[0];
    let total = values.sum(Kind::Double).double_value(&[]);
    let share = |i: i64| values.double_value(&[i]) / total;
    let components = vectors.narrow(1, dim - 2, 2).flip([1]);
    (centred.matmul(&components), [share(dim - 1), share(dim - 2)])
}

/// Pearson's correlation of two equally long series.
pub fn pearson(a: &[f64], b: &[f64]) -> f64 {
    let n = a.len() as f64;
    let (ma, mb) = (a.iter().sum::<f64>() / n, b.iter().sum::<f64>() / n);
    let cov: f64 = a.iter().zip(b).map(|(x, y)| (x - ma) * (y - mb)).sum();
    let (va, vb): (f64, f64) = (a.iter().map(|x| (x - ma).powi(2)).sum(), b.iter().map(|y| (y - mb).powi(2)).sum());
    cov / (va * vb).sqrt().max(f64::MIN_POSITIVE)
}

fn analyse(name: &str, table: &Tensor, figure: PathBuf) -> Result<TableAnalysis> {
    let similarity = rows_f64(&cosine_similarities(table));
    let positions = similarity.len();
    let similarity_by_distance = std::iter::successors(Some(1usize), |d| Some(d * 2))
        .take_while(|&d| d < positions)
        .map(|d| (d, (0..positions - d).map(|i| similarity[i][i + d]).sum::<f64>() / (positions - d) as f64))
        .collect();
    let (projected, explained_variance) = principal_components(table);
    let projected = rows_f64(&projected);
    let (xs, ys): (Vec<f64>, Vec<f64>) = projected.iter().map(|p| (p[0], p[1])).unzip();
    let order: Vec<f64> = (0..positions).map(|p| p as f64).collect();
    let heatmap =
        Heatmap { values: &similarity, x_label: "position", y_label: "position", annotate: false, tick_labels: None };
    let x_label = format!("component 1 ({:.0} % of the variance)", 100.0 * explained_variance[0]);
    let y_label = format!("component 2 ({:.0} %)", 100.0 * explained_variance[1]);
    let scatter =
        Scatter { xs: &xs, ys: &ys, values: &order, value_label: "position", x_label: &x_label, y_label: &y_label };
    let similarity_title = format!("{name}: cosine similarity");
    let pca_title = format!("{name}: PCA");
    let panels: [(&str, &dyn Figure); 2] = [(&similarity_title, &heatmap), (&pca_title, &scatter)];
    write_grid(&figure, &panels, 2, (640, 600))?;
    Ok(TableAnalysis {
        name: name.to_string(),
        similarity_by_distance,
        explained_variance,
        first_component_vs_position: pearson(&xs, &order),
        figure,
    })
}

/// Analyses the model's learned table and a sinusoidal one of its size.
pub fn run(context: &RunContext, model: &Model) -> Result<Ex21_20> {
    let gpt = model.gpt();
    let learned = gpt.pos_emb.as_ref().ok_or_else(|| {
        anyhow!("{} has no learned position embeddings (its positions are {:?})", model.name, gpt.cfg.pos_encoding)
    })?;
    let table = learned.ws.detach().to_device(tch::Device::Cpu);
    let (positions, dim) = table.size2()?;
    context.create_out_dir()?;
    let tables = vec![
        analyse("learned", &table, context.out_dir.join("ex21_20-learned.png"))?,
        analyse(
            "sinusoidal",
            &sinusoidal_table(positions, dim, tch::Device::Cpu),
            context.out_dir.join("ex21_20-sinusoidal.png"),
        )?,
    ];
    let curves: Vec<(Vec<f64>, Vec<f64>)> =
        tables.iter().map(|t| t.similarity_by_distance.iter().map(|&(d, s)| ((d as f64).log2(), s)).unzip()).collect();
    let chart = Chart {
        series: tables
            .iter()
            .zip(&curves)
            .enumerate()
            .map(|(i, (t, (xs, ys)))| Series { xs, ys, color: PALETTE[i], label: &t.name })
            .collect(),
        x_label: "log2 of the distance between positions",
        y_label: "mean cosine similarity",
        top_axis: None,
        width: 800,
        height: 500,
    };
    let distance_figure = context.out_dir.join("ex21_20-similarity-by-distance.png");
    chart.write_png(&distance_figure)?;
    Ok(Ex21_20 { model: model.name.clone(), positions, dim, tables, distance_figure })
}

impl fmt::Display for Ex21_20 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "Model: {}; {} positions of {} dimensions", self.model, self.positions, self.dim)?;
        let distances: Vec<usize> = self.tables[0].similarity_by_distance.iter().map(|&(d, _)| d).collect();
        let header: Vec<String> = distances.iter().map(|d| format!("d = {d}")).collect();
        writeln!(f, "Mean cosine similarity of positions d apart, and the PCA:")?;
        writeln!(f, "| table | {} | variance in 2 components | component 1 vs position |", header.join(" | "))?;
        writeln!(f, "|---|{}---:|---:|", "---:|".repeat(distances.len()))?;
        for t in &self.tables {
            let cells: Vec<String> = t.similarity_by_distance.iter().map(|(_, s)| format!("{s:.2}")).collect();
            writeln!(
                f,
                "| {} | {} | {:.0} % + {:.0} % | r = {:.2} |",
                t.name,
                cells.join(" | "),
                100.0 * t.explained_variance[0],
                100.0 * t.explained_variance[1],
                t.first_component_vs_position
            )?;
        }
        for t in &self.tables {
            writeln!(f, "{}: {}", t.name, t.figure.display())?;
        }
        write!(f, "Similarity against distance: {}", self.distance_figure.display())
    }
}
