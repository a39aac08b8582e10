"""Configuration: dataclasses with named presets, every size, loss weight and learning rate in one place.

Presets (``preset(name, **overrides)``):

* ``tiny``   — unit tests: well under a second per update on a CPU core.
* ``small``  — trains on 2 CPU cores: 16×16 sequences (256 images) per update, conv depth 16.
* ``medium`` — a bigger CPU / small GPU model.
* ``large``  — GPU: DreamerV3-like widths, 16×64 sequences.

Overrides use field names of the nested dataclasses, dotted or plain when unambiguous:
``preset("small", deter=256, **{"train.lr": 1e-4})``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any


@dataclass
class ModelConfig:
    """World-model architecture (DESIGN.md §2)."""

    image_size: int = 64
    cnn_depth: int = 16  # channels of the first conv stage; doubles per stage (64→32→16→8→4)
    res_blocks: int = 1  # bottleneck residual cells per stage from 16×16 down (NVAE-style, Vahdat & Kautz 2020)
    deter: int = 128  # h: recurrent state size
    stoch: int = 16  # z: stochastic latent size
    hidden: int = 128  # MLP width (posterior, prior, heads, cell input)
    cell: str = "lstm"  # recurrence: "lstm" (LayerNorm LSTM) | "lstm_stiefel" (W_h on the Stiefel manifold) | "gru"
    prior: str = "gaussian"  # p(z|h): "gaussian" | "dpgmm" (stick-breaking mixture)
    prior_components: int = 8  # DPGMM truncation K
    prior_min_concentration: float = 0.1  # floor of the DPGMM's Beta stick concentrations
    alpha_shape: float = 0.2  # Gamma(a0, b0) hyperprior of the DP concentration α (shape, rate): mean 0.2, weak,
    alpha_rate: float = 1.0  # so one component when one suffices, more when the data asks (tests/test_dpgmm.py)
    min_std: float = 0.1  # floor of posterior / prior standard deviations
    # standardise the encoder's input frames by running pixel statistics (encoder_decoder/normalizer.py): without
    # it `tiny` stayed collapsed for 1000+ updates on cartpole, with it z carried the state within ~400
    input_norm: bool = True
    # pillar 1: a causal Perceiver IO over the frames gives the posterior a context c_t (never the recurrence or
    # the prior: imagination has no frames); its next-frame token and VQ losses join the loss as task "perceiver"
    perceiver: bool = False
    perceiver_window: int = 16  # frames the context reads (training windows; the acting belief keeps as many)
    perceiver_latents: int = 16
    perceiver_channels: int = 64
    perceiver_token_dim: int = 32
    perceiver_context: int = 32
    perceiver_codebook: int = 256
    perceiver_depth: int = 1
    perceiver_elbo_grad: bool = False  # let the ELBO's gradient reach the Perceiver through c_t (mtl.jacobian none)
    # pillar 4: an attention schema on the encoder's 16×16 map (slots seeded from h_{t−1}, a fused map, precision
    # weights on the features the posterior reads, an attention prior p(A_t | h_{t−1})); attention_schema/
    attention_schema: bool = False
    attention_slots: int = 4
    attention_dim: int = 32
    attention_iters: int = 2
    attention_precision: float = 0.5  # β: features × (1 − β + β·256·A_t)
    # how the slots' logits become one map: "mixture" = Σ_k salience_k · (slot k's spatial mask), "logsumexp" =
    # softmax over positions of τ·logsumexp_k (the first version; near-uniform maps on the toy video)
    attention_fusion: str = "mixture"
    reward_bins: int = 255  # symlog two-hot bins of the reward head (DreamerV3)
    reward_head_layers: int = 1
    cont_head_layers: int = 1


@dataclass
class LossConfig:
    """Loss weights and KL settings (DreamerV3: dyn 0.5, rep 0.1, free bits 1 nat per step)."""

    recon: float = 1.0
    reward: float = 1.0
    cont: float = 1.0
    attention_prior: float = 1.0  # weight of KL(sg(A_t) ‖ p(A_t | h_{t−1})): the model predicts its attention
    attention_diversity: float = 0.1  # weight of the slots' diversity penalty
    # weight of the map's entropy over log(256) (attention as a limited resource: the map must concentrate, and
    # the reconstruction decides where); 0 leaves the map's sharpness to the reconstruction alone
    attention_entropy: float = 0.1
    # ... applied as a hinge above this entropy ratio (0: plain entropy minimisation, which collapsed the map
    # onto one position on cartpole; docs/investigations/attention_schema.md)
    attention_entropy_target: float = 0.5
    perceiver_loss: float = 1.0  # weight of the Perceiver's next-frame token cross-entropy and its VQ losses
    kl_dyn: float = 0.5  # weight of KL(sg(q) ‖ p): trains the prior
    kl_rep: float = 0.1  # weight of KL(q ‖ sg(p)): trains the posterior
    free_nats: float = 1.0  # free bits, clipping each step's KL (DreamerV3); Monte Carlo: its mean over S samples
    kl_estimator: str = "exact"  # "exact" (closed form, else Monte Carlo) | "sample" (Monte Carlo) | "bound" (mixtures)
    kl_samples: int = 1  # Monte Carlo samples S of the KL (the first is the rollout's own z)
    # weight of the adversarial term −E[D(x̂)] on decoded frames (0: off, no discriminator is built); the patch
    # discriminator trains by its own Adam (multi_task_learning/adversarial.py)
    adversarial: float = 0.0
    adversarial_depth: int = 16  # the discriminator's first conv width
    adversarial_lr: float = 2e-4
    # weight of the LPIPS distance between decoded and true frames (0: off; encoder_decoder/perceptual.py). Its
    # weights load offline: a directory holding alexnet-owt-7be5be79.pth and alex.pth, or "" for the torch hub
    # cache and the lpips package; perceptual_pretrained=False uses a random backbone (tests, cost)
    perceptual: float = 0.0
    perceptual_weights: str = ""
    perceptual_pretrained: bool = True


@dataclass
class TrainConfig:
    """World-model optimisation."""

    batch_size: int = 16
    batch_length: int = 16
    lr: float = 3e-4
    eps: float = 1e-8
    weight_decay: float = 0.0
    grad_clip: float = 100.0
    # share of the batch's B·T rows the decoder reconstructs each update (a uniform random subset; the mean
    # over it estimates the full reconstruction loss without bias); the decoder is ~half of a `small` update
    decode_fraction: float = 1.0
    # bf16 autocast on the conv stacks, where the device has bf16 units (CUDA; a CPU that torch reports
    # bf16-capable); elsewhere the model runs fp32 and says so once (bf16 emulation was 8× slower on AVX2)
    autocast_bf16: bool = False
    channels_last: bool = False


@dataclass
class BehaviorConfig:
    """Actor-critic trained in imagination (DreamerV3 recipe; DESIGN.md §2 Behaviour)."""

    horizon: int = 15  # imagined steps H
    start_fraction: float = 1.0  # share of the batch's B·T posterior states that start imagination (random subset)
    gamma: float = 0.997  # discount (DreamerV3: horizon 333)
    lam: float = 0.95  # λ of the λ-returns
    entropy: float = 3e-4  # actor entropy bonus η
    # "reinforce" (score function with the normalised advantage; current DreamerV3) | "dynamics" (backprop through
    # the imagined rollout, DreamerV3's first DMC setting) | "auto": dynamics for the Gaussian prior, reinforce for
    # the DPGMM, whose sampled component has no pathwise gradient. "auto" by default: with exact cartpole dynamics
    # backprop reaches ~700 on swingup where REINFORCE spins the pole at ~200, and from pixels it (with the fast
    # critic below) balanced at 962 by 50k env steps where REINFORCE had 474; on swingup from pixels it can pin
    # the cart to the rail (docs/investigations/agent_learning.md)
    actor_grad: str = "auto"
    # with actor_grad "dynamics": weight ρ of a REINFORCE term mixed into the backprop objective (DreamerV2's
    # actor_grad_mix): (1 − ρ)·R^λ/S + ρ·log π(a|s)·sg(A)
    actor_grad_mix: float = 0.0
    # world-model updates before the actor's first step (the critic trains from the start): until the model
    # responds to actions, the pathwise gradient is noise that Adam turns into full steps, so the actor
    # saturates to a constant push, the replay then holds one action and the model never learns what
    # actions do (docs/investigations/agent_learning.md, "The actor saturates while the model is blind to
    # actions"). Dreamer's ``pretrain`` and TD-MPC2's seed updates play this role
    actor_warmup: int = 1000  # `small`: 4000 agent steps after learning_starts; tiny: 0 (tests move the actor)
    actor_lr: float = 8e-5
    critic_lr: float = 3e-4  # 8e-5 (with slow_reg 1) lets the value lag the policy by thousands of updates
    eps: float = 1e-5
    grad_clip: float = 100.0
    layers: int = 2  # hidden layers of actor and critic (width = model.hidden)
    critic_bins: int = 255
    slow_critic_rate: float = 0.02  # EMA rate of the slow critic per update
    slow_target: bool = False  # bootstrap λ-returns from the slow critic (DreamerV2) instead of the online one (V3)
    slow_reg: float = 0.0  # weight of the critic's regulariser toward the slow critic (DreamerV3: 1; slows the fit)
    replay_critic: float = 0.0  # weight of the critic loss on replayed sequences' real λ-returns (DreamerV3 repval)
    return_ema_rate: float = 0.01  # EMA rate of the P5/P95 return percentiles
    actor_min_std: float = 0.1
    actor_max_std: float = 1.0


@dataclass
class AgentConfig:
    """Data collection and replay for the ``AIME`` agent.

    Train ratio (Dreamer's term: replayed rows per agent step) =
    gradient_steps · batch_size · batch_length / train_every. ``small``: 1 · 16 · 16 / 2 = 128.
    """

    buffer_size: int = 100_000  # rows (agent steps) kept, split evenly across envs
    learning_starts: int = 1000  # agent steps of random actions before the first update
    train_every: int = 2  # agent steps (per env) between training rounds: SB3's train_freq
    gradient_steps: int = 1  # updates per training round
    image_every: int = 1000  # updates between TensorBoard images (reconstructions, imagination)
    # std of Gaussian noise added to the collected actions (Dreamer v1's expl_amount 0.3), clipped to [−1, 1];
    # builds SB3's NormalActionNoise when no ``action_noise`` is passed
    expl_noise: float = 0.0


@dataclass
class MultiTaskConfig:
    """Pillar 5: the world model's loss terms grouped into tasks, and how the tasks' gradients on the shared trunk
    combine (``aime_agent/multi_task_learning``; docs/multi_task_learning.md). The default is plain
    backpropagation of the summed ELBO."""

    combiner: str = "sum"  # "sum" | "rgb" | "rgb_projected" | "upgrad" | "mgda"
    # "name=term+term,...": each loss term (recon, kl_dyn, kl_rep, reward, cont) in exactly one task
    tasks: str = "elbo=recon+kl_dyn+kl_rep+reward+cont"
    weights: str = ""  # "name=w,...": positive task weights; a task not named weighs 1
    # per-task gradients: "none" (one backward pass; sum only) | "representation" (at the trunk's output, one
    # backward pass through the trunk) | "parameters" (over every trunk parameter, ~T× the trunk's backward)
    jacobian: str = "none"
    rgb_mu: float = 0.9  # EMA rate of RGB's consensus direction
    rgb_lambda: float = 1.0  # RGB's pull of each rotated gradient back toward its own direction
    rgb_steps: int = 3  # gradient steps on RGB's rotation angles per update (warm-started)
    rgb_lr: float = 0.2  # their step size
    # jacobian "parameters": task rows TorchJD differentiates at once (0 = all, through torch.vmap); 1 because
    # vmap fails in the conv encoder's backward on torch 2.13 ("NYI: querying is_contiguous inside of vmap")
    parallel_chunk_size: int = 1


@dataclass
class AIMEConfig:
    """Everything that defines an AIME model and its training."""

    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    behavior: BehaviorConfig = field(default_factory=BehaviorConfig)
    agent: AgentConfig = field(default_factory=AgentConfig)
    mtl: MultiTaskConfig = field(default_factory=MultiTaskConfig)
    preset: str = "small"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AIMEConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown config sections {sorted(unknown)}; expected {sorted(known)}")
        parts = {}
        for f in dataclasses.fields(cls):
            if f.name not in data:
                continue
            if f.name == "preset":
                parts[f.name] = data[f.name]
            else:
                sub = f.default_factory  # type: ignore[misc]
                parts[f.name] = _build(sub, _with_legacy(sub, data[f.name], f.name), f.name)
        return cls(**parts)

    def override(self, **overrides: Any) -> AIMEConfig:
        """A copy with fields replaced: ``deter=64`` or ``**{"train.lr": 1e-4}``."""
        data = self.to_dict()
        for key, value in overrides.items():
            section, name = _locate(data, key)
            current = data[section][name]
            if (
                current is not None
                and not isinstance(value, type(current))
                and not (isinstance(current, float) and isinstance(value, int))
            ):
                raise TypeError(f"config field {section}.{name} is {type(current).__name__}, got {value!r}")
            data[section][name] = float(value) if isinstance(current, float) else value
        return AIMEConfig.from_dict(data)


def _with_legacy(cls, values: dict[str, Any], section: str) -> dict[str, Any]:
    """A section saved before some fields existed (it lacks those fields and nothing else) gets their
    ``LEGACY`` values; a partial section written by hand gets the defaults."""
    legacy = LEGACY.get(section, {})
    missing = {f.name for f in dataclasses.fields(cls)} - set(values)
    if missing and missing <= set(legacy):
        return {**{k: legacy[k] for k in missing}, **values}
    return values


def _build(cls, values: dict[str, Any], section: str):
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(values) - names
    if unknown:
        raise ValueError(f"unknown fields {sorted(unknown)} in config section {section!r}")
    return cls(**values)


def _locate(data: dict[str, Any], key: str) -> tuple[str, str]:
    if "." in key:
        section, name = key.split(".", 1)
        if section in data and isinstance(data[section], dict) and name in data[section]:
            return section, name
        raise ValueError(f"unknown config field {key!r}")
    owners = [s for s, v in data.items() if isinstance(v, dict) and key in v]
    if len(owners) != 1:
        fields = sorted(f"{s}.{n}" for s, v in data.items() if isinstance(v, dict) for n in v)
        why = "ambiguous; write it as section.field" if owners else "unknown"
        raise ValueError(f"config field {key!r} is {why}. Fields: {', '.join(fields)}")
    return owners[0], key


# Fields added after checkpoints existed, with the value that reproduces the old behaviour: a saved config
# that lacks only these gets them (``_with_legacy``), so an old checkpoint loads and resumes as it was.
# (Fields added later with an off default are listed too, so a section lacking several still counts as legacy.)
_PERCEIVER_OFF = {f.name: f.default for f in dataclasses.fields(ModelConfig)
                  if f.name.startswith(("perceiver", "attention"))}  # fmt: skip
LEGACY: dict[str, dict[str, Any]] = {
    # checkpoints from before the mixture fusion and the entropy term had the logsumexp map and no entropy term
    "model": {"input_norm": False, **_PERCEIVER_OFF, "attention_fusion": "logsumexp"},
    "loss": {
        **{f.name: f.default for f in dataclasses.fields(LossConfig)
           if f.name.startswith(("adversarial", "perceiver", "perceptual", "attention"))},
        "attention_entropy": 0.0,
        "attention_entropy_target": 0.0,
    },
}  # fmt: skip

PRESETS: dict[str, dict[str, Any]] = {
    "tiny": {
        "model.cnn_depth": 8,
        "model.res_blocks": 0,
        "model.deter": 32,
        "model.stoch": 8,
        "model.hidden": 32,
        "model.reward_bins": 31,
        "train.batch_size": 2,
        "train.batch_length": 8,
        "train.lr": 1e-3,
        "behavior.horizon": 5,
        "behavior.critic_bins": 31,
        "behavior.actor_lr": 3e-4,
        "behavior.critic_lr": 3e-4,
        "behavior.actor_warmup": 0,
        "agent.buffer_size": 10_000,
        "agent.learning_starts": 64,
        "agent.train_every": 4,
        "agent.image_every": 200,
    },
    # fp32: bf16 autocast + channels_last is 1.2× faster on 2 CPU cores, but its open-loop error at
    # horizons 5/15 was higher on 2 seeds (docs/benchmarks/world_model_quality.md); opt in with
    # autocast_bf16=True, channels_last=True. Half the frames decoded and half the states imagined from:
    # the decoder and the actor-critic were ~45 % and ~25 % of an update (docs/benchmarks/learning_speed.md).
    "small": {"train.decode_fraction": 0.5, "behavior.start_fraction": 0.5},
    "medium": {
        "model.cnn_depth": 32,
        "model.deter": 256,
        "model.stoch": 32,
        "model.hidden": 256,
        "train.batch_size": 16,
        "train.batch_length": 32,
    },
    "large": {
        "model.cnn_depth": 48,
        "model.res_blocks": 2,
        "model.deter": 512,
        "model.stoch": 32,
        "model.hidden": 512,
        "train.batch_size": 16,
        "train.batch_length": 64,
        "train.lr": 1e-4,
        "train.autocast_bf16": True,
    },
}


# The five pillars as config switches, each one's overrides (README: "The five pillars, measured"), and all five
# together ("full"). The defaults leave every pillar off: none has improved the world model yet
# (docs/benchmarks/ablations.md). The benchmark suite names these as agents: "aime+dpgmm", "aime+full".
PILLARS: dict[str, dict[str, Any]] = {
    "perceiver": {"model.perceiver": True},
    "dpgmm": {"model.prior": "dpgmm"},
    "stiefel": {"model.cell": "lstm_stiefel"},
    "attention": {"model.attention_schema": True},
    # the best combiner by docs/benchmarks/gradient_balancing.md: UPGrad at the representation (RGB blurs)
    "balancing": {"mtl.combiner": "upgrad", "mtl.jacobian": "representation",
                  "mtl.tasks": "image=recon,latent=kl_dyn+kl_rep,reward=reward+cont"},
}  # fmt: skip
PILLARS["full"] = {key: value for pillar in list(PILLARS.values()) for key, value in pillar.items()}


def preset(name: str = "small", **overrides: Any) -> AIMEConfig:
    """The named preset with ``overrides`` applied (see the module docstring)."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose from {sorted(PRESETS)}")
    config = AIMEConfig(preset=name).override(**PRESETS[name])
    return config.override(**overrides) if overrides else config
