//! Distances between embedding rows, computed on the data party's device in chunks.

use burn::tensor::{Device, Tensor, TensorData};

/// Query rows go to the device this many at a time.
const CHUNK: usize = 256;

/// A set of candidate rows `[n, dim]` on a device, against which query rows are measured.
pub(crate) struct Candidates {
    matrix: Tensor<2>,
    sq_norms: Tensor<2>,
    n: usize,
    dim: usize,
    device: Device,
}

impl Candidates {
    /// `rows` (`n × dim`, row-major) on `device`.
    pub(crate) fn new(rows: &[f32], dim: usize, device: &Device) -> Self {
        let n = rows.len() / dim.max(1);
        let matrix = Tensor::<2>::from_data(TensorData::new(rows.to_vec(), [n, dim]), device);
        let sq_norms = matrix.clone().powf_scalar(2.0).sum_dim(1).reshape([1, n]);
        Self {
            matrix,
            sq_norms,
            n,
            dim,
            device: device.clone(),
        }
    }

    /// How many candidates there are.
    pub(crate) fn len(&self) -> usize {
        self.n
    }

    /// Dot products of each query row with each candidate, `[m, n]` row-major.
    pub(crate) fn dots(&self, queries: &[f32]) -> Vec<f32> {
        self.chunked(queries, |q| q.matmul(self.matrix.clone().transpose()))
    }

    /// Euclidean distances of each query row to each candidate, `[m, n]` row-major.
    pub(crate) fn distances(&self, queries: &[f32]) -> Vec<f32> {
        self.chunked(queries, |q| {
            let q_sq = q.clone().powf_scalar(2.0).sum_dim(1);
            let cross = q.matmul(self.matrix.clone().transpose());
            (q_sq + self.sq_norms.clone() - cross * 2.0)
                .clamp_min(0.0)
                .sqrt()
        })
    }

    fn chunked(&self, queries: &[f32], op: impl Fn(Tensor<2>) -> Tensor<2>) -> Vec<f32> {
        let m = queries.len() / self.dim.max(1);
        let mut out = Vec::with_capacity(m * self.n);
        for chunk in queries.chunks(CHUNK * self.dim.max(1)) {
            let rows = chunk.len() / self.dim.max(1);
            if rows == 0 {
                break;
            }
            let q = Tensor::<2>::from_data(
                TensorData::new(chunk[..rows * self.dim].to_vec(), [rows, self.dim]),
                &self.device,
            );
            let values = op(q).into_data().try_into_vec_as::<f32>();
            out.extend(values.unwrap_or_else(|_| vec![f32::NAN; rows * self.n]));
        }
        out
    }
}

/// The embedding table `[vocab, dim]` on the host.
pub(crate) struct HostEmbeddings {
    /// Row-major values.
    pub values: Vec<f32>,
    /// Rows.
    pub rows: usize,
    /// Columns.
    pub dim: usize,
}

impl HostEmbeddings {
    /// A copy of `table`, or why not.
    pub(crate) fn of(table: &Tensor<2>) -> Result<Self, String> {
        let [rows, dim] = table.dims();
        let values = table
            .clone()
            .into_data()
            .try_into_vec_as::<f32>()
            .map_err(|e| format!("the input embeddings cannot be read as f32: {e:?}"))?;
        if values.iter().any(|v| !v.is_finite()) {
            return Err("the input embeddings hold NaN or infinite values".into());
        }
        Ok(Self { values, rows, dim })
    }

    /// Row `id`, if there is one.
    pub(crate) fn row(&self, id: u32) -> Option<&[f32]> {
        let id = id as usize;
        (id < self.rows).then(|| &self.values[id * self.dim..(id + 1) * self.dim])
    }
}
