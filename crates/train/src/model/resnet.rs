//! A small residual network in the style of ResNet-20, for 28×28 grayscale images.

use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{BatchNorm, BatchNormConfig, Linear, PaddingConfig2d};
use burn::tensor::activation::relu;
use burn::tensor::{Device, Tensor};

use super::init::SeededInit;
use super::{Classifier, NUM_CLASSES};
use crate::kernels::{batch_norm, conv2d, linear};

/// Channels of the three stages.
const STAGE_CHANNELS: [usize; 3] = [16, 32, 64];
/// Basic blocks per stage.
const BLOCKS_PER_STAGE: usize = 3;

/// 3×3 convolution without bias (a BatchNorm follows), padding 1.
fn conv3x3(init: &mut SeededInit, c_in: usize, c_out: usize, stride: usize) -> Conv2d {
    init.conv2d(
        Conv2dConfig::new([c_in, c_out], [3, 3])
            .with_stride([stride, stride])
            .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
            .with_bias(false),
    )
}

fn new_batch_norm(init: &SeededInit, channels: usize) -> BatchNorm {
    BatchNormConfig::new(channels).init(init.device())
}

/// Projection shortcut: 1×1 convolution with stride, then BatchNorm.
#[derive(Module, Debug)]
pub struct Projection {
    conv: Conv2d,
    bn: BatchNorm,
}

/// Basic residual block: `relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x))`, where the
/// shortcut is the identity, or a [`Projection`] when the block changes stride or width.
#[derive(Module, Debug)]
pub struct BasicBlock {
    conv1: Conv2d,
    bn1: BatchNorm,
    conv2: Conv2d,
    bn2: BatchNorm,
    shortcut: Option<Projection>,
}

impl BasicBlock {
    fn new(init: &mut SeededInit, c_in: usize, c_out: usize, stride: usize) -> Self {
        let conv1 = conv3x3(init, c_in, c_out, stride);
        let bn1 = new_batch_norm(init, c_out);
        let conv2 = conv3x3(init, c_out, c_out, 1);
        let bn2 = new_batch_norm(init, c_out);
        let shortcut = (stride != 1 || c_in != c_out).then(|| Projection {
            conv: init.conv2d(
                Conv2dConfig::new([c_in, c_out], [1, 1])
                    .with_stride([stride, stride])
                    .with_bias(false),
            ),
            bn: new_batch_norm(init, c_out),
        });
        Self {
            conv1,
            bn1,
            conv2,
            bn2,
            shortcut,
        }
    }

    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let residual = match &self.shortcut {
            Some(projection) => batch_norm(&projection.bn, conv2d(&projection.conv, x.clone())),
            None => x.clone(),
        };
        let out = relu(batch_norm(&self.bn1, conv2d(&self.conv1, x)));
        let out = batch_norm(&self.bn2, conv2d(&self.conv2, out));
        relu(out + residual)
    }
}

/// ResNet-20 style network adapted to 28×28 grayscale images.
///
/// Stem: conv 3×3 1→16, BatchNorm, ReLU. Then three stages of three [`BasicBlock`]s with 16, 32
/// and 64 channels; the first block of stages 2 and 3 has stride 2 (28→14→7) and a 1×1
/// projection shortcut. Then global average pooling and linear 64→10. Convolutions have no bias.
///
/// Trainable parameters: 272,186 ([`ResNet::PARAM_COUNT`]); BatchNorm running statistics add
/// 1,568 buffer values (21 BatchNorm layers, see [`crate::bridge`]).
///
/// BatchNorm uses batch statistics when the model is on an autodiff device (the default for a
/// model built on [`crate::training_device`]) and running statistics after
/// [`Module::valid`](burn::module::Module::valid).
#[derive(Module, Debug)]
pub struct ResNet {
    stem_conv: Conv2d,
    stem_bn: BatchNorm,
    blocks: Vec<BasicBlock>,
    fc: Linear,
}

impl ResNet {
    /// Number of trainable parameters (convolutions, BatchNorm γ and β, the final linear layer).
    pub const PARAM_COUNT: usize = 272_186;

    /// Number of BatchNorm running-statistics values (mean and variance of 21 layers).
    pub const BUFFER_COUNT: usize = 1_568;

    /// Builds the network on `device`, initialized deterministically from `seed`.
    pub fn new(device: &Device, seed: u64) -> Self {
        let mut init = SeededInit::new(device, seed);
        let stem_conv = conv3x3(&mut init, 1, STAGE_CHANNELS[0], 1);
        let stem_bn = new_batch_norm(&init, STAGE_CHANNELS[0]);
        let mut blocks = Vec::with_capacity(STAGE_CHANNELS.len() * BLOCKS_PER_STAGE);
        let mut c_in = STAGE_CHANNELS[0];
        for (stage, &c_out) in STAGE_CHANNELS.iter().enumerate() {
            for block in 0..BLOCKS_PER_STAGE {
                let stride = if stage > 0 && block == 0 { 2 } else { 1 };
                blocks.push(BasicBlock::new(&mut init, c_in, c_out, stride));
                c_in = c_out;
            }
        }
        let fc = init.linear(c_in, NUM_CLASSES);
        Self {
            stem_conv,
            stem_bn,
            blocks,
            fc,
        }
    }
}

impl Classifier for ResNet {
    fn forward(&self, images: Tensor<4>) -> Tensor<2> {
        let mut x = relu(batch_norm(&self.stem_bn, conv2d(&self.stem_conv, images)));
        for block in &self.blocks {
            x = block.forward(x);
        }
        // Global average pooling over height and width: [b, c, h, w] -> [b, c].
        let x: Tensor<2> = x.mean_dim(3).mean_dim(2).flatten(1, 3);
        linear(&self.fc, x)
    }
}
