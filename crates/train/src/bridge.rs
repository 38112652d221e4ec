//! The bridge between burn modules and flat `f32` vectors.
//!
//! The optimizers of `stagewise-core` and the parameter server work on `&mut [f32]`; burn keeps
//! parameters in tensors inside a module tree. This module copies between the two.
//!
//! # Order
//!
//! Every function here walks the module with burn's [`Module::visit`] / [`Module::map`]: fields
//! depth-first in declaration order, `Vec` elements by index, an `Option` only when `Some`, an
//! enum through its active variant. Each tensor contributes its values in row-major order. The
//! flat parameter vector, the flat gradient vector and [`param_layout`] all use this one order;
//! for a [`Linear`](burn::nn::Linear) layer that is `weight` (`[d_input, d_output]`) then
//! `bias`, for a [`Conv2d`](burn::nn::conv::Conv2d) `weight` (`[c_out, c_in, kh, kw]`) then
//! `bias`, for a [`BatchNorm`](burn::nn::BatchNorm) `gamma` then `beta`.
//!
//! # Parameters and buffers
//!
//! BatchNorm running statistics are visited like parameters by burn but are not trained by
//! gradients. A float tensor held in a field named `running_mean` or `running_var` (burn's
//! BatchNorm field names) is a *buffer*: it is excluded from the parameter functions
//! ([`param_count`], [`flatten_params`], [`write_params`], [`flatten_grads`]) and handled by the
//! buffer functions ([`buffer_count`], [`flatten_buffers`], [`write_buffers`]), in the same
//! visiting order. A checkpoint or the parameter server carries both vectors; models without
//! BatchNorm have no buffers.
//!
//! ```
//! use stagewise_train::bridge;
//! use stagewise_train::model::{Model, ModelKind};
//!
//! let device = stagewise_train::inference_device();
//! let model = Model::new(ModelKind::Mlp, &device, 1);
//! let mut flat = bridge::flatten_params(&model);
//! assert_eq!(flat.len(), 669_706);
//! flat.iter_mut().for_each(|x| *x *= 0.5);
//! let model = bridge::write_params(model, &flat).unwrap();
//! assert_eq!(bridge::flatten_params(&model), flat);
//! assert!(bridge::write_params(model, &flat[1..]).is_err());
//! ```

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::tensor::{Tensor, TensorData};

/// Field names of float tensors that are buffers, not trainable parameters.
const BUFFER_FIELDS: [&str; 2] = ["running_mean", "running_var"];

/// Error of the functions that write a flat vector into a module.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BridgeError {
    /// The flat parameter vector does not have one value per parameter.
    #[error("flat parameter vector has {actual} values, the model has {expected} parameters")]
    ParamLength {
        /// Number of parameters of the model.
        expected: usize,
        /// Length of the given vector.
        actual: usize,
    },
    /// The flat buffer vector does not have one value per buffer value.
    #[error("flat buffer vector has {actual} values, the model has {expected} buffer values")]
    BufferLength {
        /// Number of buffer values of the model.
        expected: usize,
        /// Length of the given vector.
        actual: usize,
    },
}

/// Where one tensor lies in a flat vector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Slot {
    /// Dotted field path, e.g. `Mlp.fc1.weight` (an enum contributes its variant name, a `Vec`
    /// its index).
    pub path: String,
    /// Tensor shape.
    pub shape: Vec<usize>,
    /// Index of the tensor's first value in the flat vector.
    pub offset: usize,
    /// Number of values (product of `shape`).
    pub len: usize,
}

/// Which float tensors a walk selects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Select {
    Params,
    Buffers,
}

/// The stack of field names from the root to the tensor being visited.
#[derive(Debug, Default)]
struct FieldPath(Vec<String>);

impl FieldPath {
    fn enter(&mut self, name: &str) {
        self.0.push(name.to_owned());
    }

    fn exit(&mut self) {
        self.0.pop();
    }

    /// Whether the tensor being visited belongs to `select`. The innermost name is the field
    /// holding the tensor.
    fn selects(&self, select: Select) -> bool {
        let is_buffer = self
            .0
            .last()
            .is_some_and(|field| BUFFER_FIELDS.contains(&field.as_str()));
        is_buffer == (select == Select::Buffers)
    }
}

/// Implements the path-tracking methods of `ModuleVisitor`/`ModuleMapper` for a type with a
/// `path: FieldPath` field.
macro_rules! track_path {
    () => {
        fn enter_module(&mut self, name: &str, _container_type: &str) {
            self.path.enter(name);
        }

        fn exit_module(&mut self, _name: &str, _container_type: &str) {
            self.path.exit();
        }
    };
}

struct Counter {
    path: FieldPath,
    select: Select,
    count: usize,
}

impl ModuleVisitor for Counter {
    track_path!();

    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if self.path.selects(self.select) {
            self.count += param.lazy_shape().num_elements();
        }
    }
}

fn count<M: Module>(model: &M, select: Select) -> usize {
    let mut counter = Counter {
        path: FieldPath::default(),
        select,
        count: 0,
    };
    model.visit(&mut counter);
    counter.count
}

/// Appends the values of a tensor, as `f32`, to `out`.
fn extend_with<const D: usize>(out: &mut Vec<f32>, tensor: Tensor<D>) {
    let data = tensor.into_data_as::<f32>();
    let values = data
        .as_slice::<f32>()
        .expect("into_data_as::<f32> yields f32 data");
    out.extend_from_slice(values);
}

struct Reader<'a> {
    path: FieldPath,
    select: Select,
    out: &'a mut Vec<f32>,
}

impl ModuleVisitor for Reader<'_> {
    track_path!();

    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if self.path.selects(self.select) {
            extend_with(self.out, param.val());
        }
    }
}

fn read_into<M: Module>(model: &M, select: Select, out: &mut Vec<f32>) {
    out.clear();
    let mut reader = Reader {
        path: FieldPath::default(),
        select,
        out,
    };
    model.visit(&mut reader);
}

struct Writer<'a> {
    path: FieldPath,
    select: Select,
    flat: &'a [f32],
    offset: usize,
}

impl ModuleMapper for Writer<'_> {
    track_path!();

    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        if !self.path.selects(self.select) {
            return param;
        }
        let shape = param.lazy_shape();
        let len = shape.num_elements();
        // The caller checked the total length, so this slice is in bounds.
        let values = self.flat[self.offset..self.offset + len].to_vec();
        self.offset += len;

        let (id, old, mapper) = param.consume();
        let device = old.device();
        let mut tensor: Tensor<D> =
            Tensor::from_data(TensorData::new(values, shape), (&device, old.dtype()));
        if old.is_require_grad() {
            tensor = tensor.require_grad();
        }
        Param::from_mapped_value(id, tensor, mapper)
    }
}

fn write<M: Module>(model: M, select: Select, flat: &[f32]) -> M {
    let mut writer = Writer {
        path: FieldPath::default(),
        select,
        flat,
        offset: 0,
    };
    let model = model.map(&mut writer);
    debug_assert_eq!(writer.offset, flat.len());
    model
}

struct Layout {
    path: FieldPath,
    select: Select,
    slots: Vec<Slot>,
    offset: usize,
}

impl ModuleVisitor for Layout {
    track_path!();

    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if self.path.selects(self.select) {
            let shape = param.lazy_shape();
            let len = shape.num_elements();
            self.slots.push(Slot {
                path: self.path.0.join("."),
                shape: shape.to_vec(),
                offset: self.offset,
                len,
            });
            self.offset += len;
        }
    }
}

fn layout<M: Module>(model: &M, select: Select) -> Vec<Slot> {
    let mut layout = Layout {
        path: FieldPath::default(),
        select,
        slots: Vec::new(),
        offset: 0,
    };
    model.visit(&mut layout);
    layout.slots
}

/// Number of trainable parameters of `model` (BatchNorm running statistics excluded): the
/// length of [`flatten_params`]. Does not read tensor values.
pub fn param_count<M: Module>(model: &M) -> usize {
    count(model, Select::Params)
}

/// Copies all trainable parameters of `model` into one vector, in the [visiting
/// order](self#order).
pub fn flatten_params<M: Module>(model: &M) -> Vec<f32> {
    let mut out = Vec::with_capacity(param_count(model));
    read_into(model, Select::Params, &mut out);
    out
}

/// Like [`flatten_params`], into a reusable buffer: `out` is cleared, then filled.
pub fn read_params_into<M: Module>(model: &M, out: &mut Vec<f32>) {
    read_into(model, Select::Params, out);
}

/// Replaces the trainable parameters of `model` by the values of `flat` (in the [visiting
/// order](self#order)).
///
/// Parameter ids are kept, so optimizer state keyed by id and gradients of the next backward
/// pass still match; a parameter that required gradients still does. The new tensors are
/// leaves on the device (and with the dtype) of the old ones.
///
/// # Errors
///
/// [`BridgeError::ParamLength`] when `flat.len() != param_count(&model)`; the model is dropped
/// (keep a clone if you need it after an error).
pub fn write_params<M: Module>(model: M, flat: &[f32]) -> Result<M, BridgeError> {
    let expected = param_count(&model);
    if flat.len() != expected {
        return Err(BridgeError::ParamLength {
            expected,
            actual: flat.len(),
        });
    }
    Ok(write(model, Select::Params, flat))
}

struct GradReader<'a> {
    path: FieldPath,
    grads: &'a GradientsParams,
    out: &'a mut Vec<f32>,
}

impl ModuleVisitor for GradReader<'_> {
    track_path!();

    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if !self.path.selects(Select::Params) {
            return;
        }
        match self.grads.get::<D>(param.id) {
            Some(grad) => extend_with(self.out, grad),
            None => {
                let len = param.lazy_shape().num_elements();
                self.out.resize(self.out.len() + len, 0.0);
            }
        }
    }
}

/// Copies the gradients of `model`'s trainable parameters into one vector, in the same order
/// as [`flatten_params`]; a parameter without gradient contributes zeros.
///
/// `grads` comes from the backward pass:
///
/// ```
/// use burn::module::Module;
/// use burn::optim::GradientsParams;
/// use burn::tensor::Tensor;
/// use stagewise_train::{bridge, model::{Classifier, Model, ModelKind}};
///
/// let device = stagewise_train::training_device();
/// let model = Model::new(ModelKind::Mlp, &device, 3);
/// let loss = model.forward(Tensor::ones([4, 1, 28, 28], &device)).sum();
/// let grads = GradientsParams::from_grads(loss.backward(), &model);
/// let flat = bridge::flatten_grads(&model, &grads);
/// assert_eq!(flat.len(), bridge::param_count(&model));
/// ```
pub fn flatten_grads<M: Module>(model: &M, grads: &GradientsParams) -> Vec<f32> {
    let mut out = Vec::with_capacity(param_count(model));
    read_grads_into(model, grads, &mut out);
    out
}

/// Like [`flatten_grads`], into a reusable buffer: `out` is cleared, then filled.
pub fn read_grads_into<M: Module>(model: &M, grads: &GradientsParams, out: &mut Vec<f32>) {
    out.clear();
    let mut reader = GradReader {
        path: FieldPath::default(),
        grads,
        out,
    };
    model.visit(&mut reader);
}

struct GradTaker<'a> {
    path: FieldPath,
    grads: &'a mut GradientsParams,
    out: &'a mut Vec<f32>,
}

impl ModuleVisitor for GradTaker<'_> {
    track_path!();

    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if !self.path.selects(Select::Params) {
            return;
        }
        match self.grads.remove::<D>(param.id) {
            Some(grad) => extend_with(self.out, grad),
            None => {
                let len = param.lazy_shape().num_elements();
                self.out.resize(self.out.len() + len, 0.0);
            }
        }
    }
}

/// Like [`read_grads_into`], but takes the gradients out of `grads`: each gradient tensor is
/// then the only owner of its values, so they are copied once, straight into `out`, instead of
/// through an intermediate copy per tensor. The training loops use this.
pub fn take_grads_into<M: Module>(model: &M, mut grads: GradientsParams, out: &mut Vec<f32>) {
    out.clear();
    out.reserve(param_count(model));
    let mut taker = GradTaker {
        path: FieldPath::default(),
        grads: &mut grads,
        out,
    };
    model.visit(&mut taker);
}

/// Number of buffer values of `model` (BatchNorm running means and variances): the length of
/// [`flatten_buffers`]. Zero for models without BatchNorm.
pub fn buffer_count<M: Module>(model: &M) -> usize {
    count(model, Select::Buffers)
}

/// Copies the buffers of `model` (BatchNorm running statistics) into one vector, in the
/// [visiting order](self#order).
///
/// burn folds the statistics of the latest training batch into a BatchNorm's running state
/// lazily (on the next batch, or on [`Module::valid`]); this function reads through a
/// [`Module::valid`] snapshot, so the values include the latest batch.
pub fn flatten_buffers<M: Module>(model: &M) -> Vec<f32> {
    let mut out = Vec::with_capacity(buffer_count(model));
    read_into(&model.valid(), Select::Buffers, &mut out);
    out
}

/// Replaces the buffers of `model` (BatchNorm running statistics) by the values of `flat`.
///
/// Statistics of a training batch not yet folded into the running state are discarded, so the
/// written values are exactly those that the next read or inference pass sees.
///
/// burn keeps running statistics behind a shared pointer: clones of a module share them, so
/// writing into a clone (or training a clone) changes them in the original too. For an
/// independent copy, use `model.valid().train()`.
///
/// # Errors
///
/// [`BridgeError::BufferLength`] when `flat.len() != buffer_count(&model)`.
pub fn write_buffers<M: Module>(model: M, flat: &[f32]) -> Result<M, BridgeError> {
    let expected = buffer_count(&model);
    if flat.len() != expected {
        return Err(BridgeError::BufferLength {
            expected,
            actual: flat.len(),
        });
    }
    // `valid` folds pending per-thread batch statistics into the shared running state (the
    // snapshot itself is not needed); otherwise they would overwrite the written values at the
    // next training forward pass.
    drop(model.valid());
    Ok(write(model, Select::Buffers, flat))
}

/// Where each trainable parameter tensor lies in the flat parameter vector, in the
/// [visiting order](self#order).
///
/// ```
/// use stagewise_train::bridge;
/// use stagewise_train::model::{Model, ModelKind};
///
/// let model = Model::new(ModelKind::Mlp, &stagewise_train::inference_device(), 0);
/// let slots = bridge::param_layout(&model);
/// assert_eq!(slots[0].path, "Mlp.fc1.weight");
/// assert_eq!(slots[0].shape, [784, 512]);
/// assert_eq!(slots[1].path, "Mlp.fc1.bias");
/// assert_eq!(slots[1].offset, 784 * 512);
/// ```
pub fn param_layout<M: Module>(model: &M) -> Vec<Slot> {
    layout(model, Select::Params)
}

/// Where each buffer tensor lies in the flat buffer vector, in the [visiting order](self#order).
pub fn buffer_layout<M: Module>(model: &M) -> Vec<Slot> {
    layout(model, Select::Buffers)
}
