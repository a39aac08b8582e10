"""The AIME world model (core): encoder, recurrent state, prior, posterior, decoder and heads.

Generative model (RSSM form, PlaNet/Dreamer; DESIGN.md §2), for row t of the batch schema:

    h_t = f(h_{t−1}, z_{t−1}, a_t)          a_t = the action that produced o_t; reset where is_first
    z_t ~ p(z_t | h_t)                       prior (reads h only, so imagination needs no frames)
    z_t ~ q(z_t | h_t, e_t),  e_t = Enc(x_t) posterior (the only place frames enter)
    x_t ~ N(Dec(h_t, z_t), I);  r_t ~ TwoHot(h_t, z_t);  c_t ~ Bernoulli(h_t, z_t)

Loss per row: −log p(x_t|·) + 0.5·(L_dyn + R_prior) + 0.1·L_rep − log p(r_t|·) − log p(c_t|·) (``losses.py``);
R_prior is the prior's own regulariser (the DPGMM's stick and concentration KLs; 0 for a Gaussian).

Shapes: B batch, T time, N = B·T or an imagination batch, S image side, A actions,
H = deter, Z = stoch, F = H + Z, E = embed dim, R = the cell's state size (2H for the LSTM).
"""

from __future__ import annotations

import contextlib
import functools
import math
import warnings
from collections.abc import Callable, Mapping
from typing import NamedTuple

import torch
from torch import Tensor, nn

from aime_agent.attention_schema import AttentionSchema
from aime_agent.config import AIMEConfig
from aime_agent.encoder_decoder import ContinueHead, ConvDecoder, ConvEncoder, PixelStandardizer, RewardHead
from aime_agent.encoder_decoder.perceptual import LPIPS
from aime_agent.generative_prior import DiagGaussian, GaussianHead, make_prior
from aime_agent.perceiver_io import CausalPerceiverIO
from aime_agent.temporal_dynamics import make_cell
from aime_agent.world_model.batch import preprocess
from aime_agent.world_model.losses import balanced_kl


@functools.cache
def _bf16_units(device_type: str) -> bool:
    if device_type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device_type == "cpu":  # AVX512-BF16 / AMX: oneDNN reports it; AVX2-only CPUs emulate bf16 (8× slower)
        return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    return False


def bf16_supported(device: torch.device) -> bool:
    """Whether ``device`` has bf16 units. Where it does not, a config asking for ``train.autocast_bf16`` runs
    fp32 and this warns once per device type."""
    if _bf16_units(device.type):
        return True
    if device.type not in _WARNED:
        _WARNED.add(device.type)
        warnings.warn(f"train.autocast_bf16 is set but this {device.type} has no bf16 units: running fp32",
                      stacklevel=3)  # fmt: skip
    return False


_WARNED: set[str] = set()


class LatentState(NamedTuple):
    """rnn (N, R): the recurrent cell's whole state; stoch (N, Z): the latent z."""

    rnn: Tensor
    stoch: Tensor

    def detach(self) -> LatentState:
        return LatentState(self.rnn.detach(), self.stoch.detach())


class WorldModel(nn.Module):
    def __init__(self, config: AIMEConfig, action_dim: int):
        super().__init__()
        m = config.model
        if m.perceiver and m.perceiver_elbo_grad and config.mtl.jacobian != "none":
            raise ValueError("model.perceiver_elbo_grad lets the ELBO train the Perceiver, so the trunk's output no "
                             "longer cuts the graph: use mtl.jacobian='none' with it")  # fmt: skip
        if not 0.0 < config.train.decode_fraction <= 1.0:
            raise ValueError(f"train.decode_fraction must lie in (0, 1], got {config.train.decode_fraction}")
        self.config, self.action_dim = config, action_dim
        self.input_norm = PixelStandardizer(m.image_size) if m.input_norm else None
        self.encoder = ConvEncoder(m.cnn_depth, m.res_blocks, m.image_size)
        self.cell_input = nn.Sequential(nn.Linear(m.stoch + action_dim, m.hidden), nn.LayerNorm(m.hidden), nn.SiLU())
        self.cell = make_cell(m.cell, m.hidden, m.deter)
        self.prior = make_prior(m)
        self.perceiver = None
        context_dim = 0
        if m.perceiver:  # pillar 1: a context c_t for the posterior only (perceiver_io/)
            self.perceiver = CausalPerceiverIO((m.perceiver_window, 3, m.image_size, m.image_size),
                                               m.perceiver_latents, m.perceiver_channels, m.perceiver_token_dim,
                                               m.perceiver_context, m.perceiver_codebook,
                                               depth=m.perceiver_depth)  # fmt: skip
            context_dim = m.perceiver_context
        self.posterior = GaussianHead(m.deter + self.encoder.embed_dim + context_dim, m.stoch, m.hidden, m.min_std)
        self.schema = None
        if m.attention_schema:  # pillar 4: attention on the encoder's 16×16 map, seeded from h_{t−1}
            self.schema = AttentionSchema(self.encoder.map_channels, m.deter, m.attention_slots, m.attention_dim,
                                          m.attention_iters, m.attention_precision, m.hidden,
                                          fusion=m.attention_fusion)  # fmt: skip
        self.feat_dim = m.deter + m.stoch
        # the frozen LPIPS network sits outside the module tree: no parameters to train or save (~10 MB)
        self._perceptual = None
        if config.loss.perceptual > 0:
            self._perceptual = [LPIPS(config.loss.perceptual_weights or None, config.loss.perceptual_pretrained)]
        self.decoder = ConvDecoder(self.feat_dim, m.cnn_depth, m.res_blocks, m.image_size)
        self.reward_head = RewardHead(self.feat_dim, m.hidden, m.reward_head_layers, m.reward_bins)
        self.cont_head = ContinueHead(self.feat_dim, m.hidden, m.cont_head_layers)
        if config.mtl.combiner == "harmony":  # HarmonyDream's learned log loss scales, one per task
            from aime_agent.multi_task_learning import parse_tasks

            self.harmony = nn.Parameter(torch.zeros(len(parse_tasks(config.mtl.tasks, self.loss_terms))))
        if config.train.channels_last:
            self.encoder.to(memory_format=torch.channels_last)
            self.decoder.to(memory_format=torch.channels_last)

    # -- helpers ---------------------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        return self.cell.init_state.device

    def _autocast(self):
        if not (self.config.train.autocast_bf16 and bf16_supported(self.device)):
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=torch.bfloat16)

    def preprocess(self, batch: Mapping) -> dict[str, Tensor]:
        return preprocess(batch, self.action_dim, self.config.model.image_size, self.device)

    def feat(self, state: LatentState) -> Tensor:
        """[h, z]: (..., F)."""
        return torch.cat([self.cell.deter(state.rnn), state.stoch], dim=-1)

    def initial(self, n: int) -> LatentState:
        """The learned initial recurrent state and z = 0, for ``n`` sequences."""
        return LatentState(self.cell.initial(n), torch.zeros(n, self.config.model.stoch, device=self.device))

    def embed(self, image: Tensor) -> Tensor:
        """(B, T, 3, S, S) → (B, T, E). Frames are standardised first when ``model.input_norm``."""
        b, t = image.shape[:2]
        with self._autocast():
            e = self.encoder(self._frames_in(image))
        return e.float().view(b, t, -1)

    def _frames_in(self, image: Tensor) -> Tensor:
        """(B, T, 3, S, S) → (B·T, 3, S, S), standardised when ``model.input_norm``, channels-last if set."""
        x = image.flatten(0, 1)
        if self.input_norm is not None:
            x = self.input_norm(x)
        if self.config.train.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    def feature_maps(self, image: Tensor) -> Tensor:
        """(B, T, 3, S, S) → the encoder's 16×16 maps (B, T, C, 16, 16), for the attention schema."""
        b, t = image.shape[:2]
        with self._autocast():
            f = self.encoder.feature_map(self._frames_in(image))
        return f.float().view(b, t, *f.shape[1:])

    def attend(self, fmap: Tensor, rnn_prev: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """One step of the schema: fmap (N, C, 16, 16) and the recurrent state before this step (N, R) (the
        learned initial one at an episode start) → (e_t (N, E), the schema's outputs)."""
        out = self.schema(fmap, self.cell.deter(rnn_prev))
        with self._autocast():
            e = self.encoder.from_feature_map(out["fmap"])
        return e.float(), out

    def decode(self, feat: Tensor) -> Tensor:
        """(..., F) → image mean (..., 3, S, S)."""
        lead = feat.shape[:-1]
        with self._autocast():
            x = self.decoder(feat.flatten(0, -2))
        return x.float().view(*lead, *x.shape[1:])

    def posterior_input(self, rnn: Tensor, embed: Tensor, context: Tensor | None = None) -> Tensor:
        """[h_t, e_t] (N, H + E), and c_t (N, C) after them when the Perceiver is on. c_t is detached unless
        ``model.perceiver_elbo_grad``: the Perceiver then learns from its own task only, and the representation
        cut of gradient balancing (``representation``) stays exact."""
        if self.perceiver is None:
            return torch.cat([self.cell.deter(rnn), embed], -1)
        if context is None:
            raise ValueError("model.perceiver is on: the posterior needs the Perceiver's context c_t")
        if not self.config.model.perceiver_elbo_grad:
            context = context.detach()
        return torch.cat([self.cell.deter(rnn), embed, context], -1)

    def perceive(self, image: Tensor, is_first: Tensor | None = None) -> dict[str, Tensor]:
        """The Perceiver over preprocessed frames (B, T, 3, S, S), no frame reading across an episode start."""
        return self.perceiver(image, is_first)

    # -- one step --------------------------------------------------------------------------------
    def img_step(self, state: LatentState, action: Tensor, is_first: Tensor | None = None):
        """h_t = f(h_{t−1}, z_{t−1}, a_t) and the prior p(z_t | h_t). Returns (rnn (N, R), prior)."""
        rnn, stoch = state
        if is_first is not None:  # episode start: learned initial state, z = 0 (a_t is zero there too)
            rnn = self.cell.reset(rnn, is_first)
            stoch = torch.where(is_first.unsqueeze(-1), 0.0, stoch)
        rnn = self.cell(self.cell_input(torch.cat([stoch, action], -1)), rnn)
        return rnn, self.prior(self.cell.deter(rnn))

    # -- rollouts --------------------------------------------------------------------------------
    def observe(self, inputs: Mapping[str, Tensor], state: LatentState | None = None,
                context: Tensor | None = None) -> dict:  # fmt: skip
        """Posterior rollout over preprocessed ``inputs`` (``preprocess``) from ``state``, or from the learned
        initial state with row 0 treated as an episode start when ``state`` is None. With the Perceiver on, the
        posterior also reads ``context`` (B, T, C), by default the Perceiver's over these frames (``perceive``).
        Returns (B, T, ...) tensors:

        rnn (B,T,R), deter (B,T,H), stoch z~q (B,T,Z), feat (B,T,F), embed (B,T,E),
        post_mean / post_std (B,T,Z), and ``post`` / ``prior`` distributions over N = B·T rows.
        """
        image, action, is_first = inputs["image"], inputs["action"], inputs["is_first"]
        b, t = image.shape[:2]
        # with the schema, e_t depends on h_{t−1}: only the 16×16 maps are computed for all frames at once
        fmaps = self.feature_maps(image) if self.schema is not None else None
        embed = self.embed(image) if fmaps is None else None
        if state is None:
            # A window that starts mid-episode begins from the learned initial state: mark its first row
            # is_first (zero action), as acting sees every such state (dreamerv3-torch does the same).
            is_first = is_first.clone()
            is_first[:, 0] = True
            action = torch.where(is_first.unsqueeze(-1), 0.0, action)
            state = self.initial(b)
        if self.perceiver is not None and context is None:
            context = self.perceive(image, is_first)["context"]
        rnns, stochs, means, stds, embeds, attended = [], [], [], [], [], []
        for i in range(t):
            if fmaps is not None:
                e, schema = self.attend(fmaps[:, i], self.cell.reset(state.rnn, is_first[:, i]))
                embeds.append(e)
                attended.append(schema)
            else:
                e = embed[:, i]
            rnn, _ = self.img_step(state, action[:, i], is_first[:, i])
            post = self.posterior(self.posterior_input(rnn, e, None if context is None else context[:, i]))
            state = LatentState(rnn, post.rsample())
            rnns.append(rnn)
            stochs.append(state.stoch)
            means.append(post.mean)
            stds.append(post.std)
        rnn, stoch = torch.stack(rnns, 1), torch.stack(stochs, 1)
        deter = self.cell.deter(rnn)
        post_mean, post_std = torch.stack(means, 1), torch.stack(stds, 1)
        schema = {}
        if attended:  # (B, T, ...) stacks: the attention losses read these, the recurrence never does
            embed = torch.stack(embeds, 1)
            schema = {f"attention_{k}": torch.stack([a[k] for a in attended], 1)
                      for k in ("attention", "slots", "prior_logits")}  # fmt: skip
        return {**schema,
            "rnn": rnn, "deter": deter, "stoch": stoch, "feat": torch.cat([deter, stoch], -1), "embed": embed,
            "post_mean": post_mean, "post_std": post_std,
            "post": DiagGaussian(post_mean.flatten(0, 1), post_std.flatten(0, 1)),
            "prior": self.prior(deter.flatten(0, 1)),
            "last": state,
        }  # fmt: skip

    def imagine(self, start: LatentState, policy: Callable[[Tensor], Tensor], horizon: int) -> dict:
        """Prior rollout from ``start`` (N rows): reads no frame-derived quantity.

        For k = 0..horizon−1: a_k = policy(feat_k); h_{k+1} = f(h_k, z_k, a_k); z_{k+1} ~ p(z | h_{k+1}).
        Returns feat (horizon+1, N, F), action (horizon, N, A), rnn (horizon+1, N, R), stoch (horizon+1, N, Z).
        """
        state = start
        feats, actions, rnns, stochs = [self.feat(state)], [], [state.rnn], [state.stoch]
        for _ in range(horizon):
            action = policy(feats[-1])
            rnn, prior = self.img_step(state, action)
            state = LatentState(rnn, prior.rsample())
            feats.append(self.feat(state))
            actions.append(action)
            rnns.append(rnn)
            stochs.append(state.stoch)
        return {"feat": torch.stack(feats), "action": torch.stack(actions), "rnn": torch.stack(rnns),
                "stoch": torch.stack(stochs)}  # fmt: skip

    @torch.no_grad()
    def open_loop(self, batch: Mapping, context: int) -> tuple[Tensor, Tensor]:
        """Observe ``context`` frames, then predict the rest of the window from the recorded actions with
        the prior mean. Returns (predicted, true) images in [0, 1], (B, T, 3, S, S); rows < context are
        reconstructions."""
        inputs = self.preprocess(batch)
        t = inputs["image"].shape[1]
        ctx = {k: v[:, :context] for k, v in inputs.items()}
        out = self.observe(ctx)
        feats, state = [out["feat"]], out["last"]
        for i in range(context, t):
            rnn, prior = self.img_step(state, inputs["action"][:, i])
            state = LatentState(rnn, prior.mean)
            feats.append(self.feat(state).unsqueeze(1))
        pred = self.decode(torch.cat(feats, 1)) + 0.5
        return pred.clamp(0, 1), inputs["image"] + 0.5

    # -- loss ------------------------------------------------------------------------------------
    def recon_loss(self, feat: Tensor, image: Tensor) -> tuple[Tensor, float]:
        """−log p(x | h, z) averaged over decoded rows, and the pixel MSE of those rows (``recon_terms``)."""
        nll, mse, _, _ = self.recon_terms(feat, image)
        return nll, mse

    def recon_terms(self, feat: Tensor, image: Tensor) -> tuple[Tensor, float, Tensor, Tensor]:
        """(NLL, MSE, decoded means (M, 3, S, S), their target frames (M, 3, S, S)) over the decoded rows.

        feat (B, T, F), image (B, T, 3, S, S). With ``train.decode_fraction`` f < 1 a random subset of
        M = ⌈f·B·T⌉ rows is decoded: the mean over a uniform subset is an unbiased estimate of the mean over all
        rows (the decoder is ~half of a ``small`` update's cost). The MSE follows from the NLL in closed form,
        −log N(x; μ, I) = ½‖x − μ‖² + ½·D·log 2π, so it costs no second pass over the pixels."""
        feat, image = feat.flatten(0, 1), image.flatten(0, 1)
        rows = feat.shape[0]
        keep = math.ceil(self.config.train.decode_fraction * rows)
        if keep < rows:
            index = torch.randperm(rows, device=feat.device)[:keep]
            feat, image = feat[index], image[index]
        pred = self.decode(feat)
        nll = -ConvDecoder.log_prob(image, pred).mean()
        dims = image[0].numel()
        mse = (2.0 * nll.item() - dims * math.log(2 * math.pi)) / dims
        return nll, mse, pred, image

    def loss(self, batch: Mapping, adversary=None) -> tuple[Tensor, dict[str, float], dict]:
        """World-model loss on a batch in the schema. Returns (total, named scalar terms, rollout).

        With ``loss.adversarial`` > 0 the ``adversary`` (``multi_task_learning.Adversary``) scores the decoded
        frames and the term −E[D(x̂)] joins the loss; ``out["decoded"]`` holds (frames, targets) for its step.

        In train mode with gradients on (a training step, like BatchNorm), the batch's frames first update
        the input standardiser's running statistics."""
        cfg = self.config.loss
        inputs = self.preprocess(batch)
        if self.input_norm is not None and self.training and torch.is_grad_enabled():
            self.input_norm.update(inputs["image"])
        perceived = None
        if self.perceiver is not None:
            is_first = inputs["is_first"].clone()
            is_first[:, 0] = True  # the window's first frame starts what the Perceiver may read
            perceived = self.perceive(inputs["image"], is_first)
        out = self.observe(inputs, context=None if perceived is None else perceived["context"])
        feat = out["feat"]
        recon_nll, recon_mse, decoded, targets = self.recon_terms(feat, inputs["image"])
        dyn, rep, kl_value = balanced_kl(out["post"], out["prior"], out["stoch"].flatten(0, 1), cfg.free_nats,
                                         cfg.kl_estimator, cfg.kl_samples)  # fmt: skip
        prior_reg, prior_terms = self.prior.regularizer(out["prior"])  # the DPGMM's stick and α terms
        reward = self.reward_head.loss(feat, inputs["reward"]).mean()
        cont = self.cont_head.loss(feat, inputs["cont"]).mean()
        terms = {"recon": cfg.recon * recon_nll, "kl_dyn": cfg.kl_dyn * (dyn + prior_reg), "kl_rep": cfg.kl_rep * rep,
                 "reward": cfg.reward * reward, "cont": cfg.cont * cont}  # fmt: skip
        total = terms["recon"] + terms["kl_dyn"] + terms["kl_rep"] + terms["reward"] + terms["cont"]
        if self.schema is not None:
            flat = {k.removeprefix("attention_"): out[k].flatten(0, 1) for k in
                    ("attention_attention", "attention_slots", "attention_prior_logits")}  # fmt: skip
            attention_kl, diversity = AttentionSchema.losses(flat)
            terms["attention_prior"] = cfg.attention_prior * attention_kl
            terms["attention_diversity"] = cfg.attention_diversity * diversity
            total = total + terms["attention_prior"] + terms["attention_diversity"]
            if cfg.attention_entropy > 0:
                excess = AttentionSchema.entropy_excess(flat["attention"], cfg.attention_entropy_target)
                terms["attention_entropy"] = cfg.attention_entropy * excess
                total = total + terms["attention_entropy"]
        if perceived is not None:
            token_ce, token_accuracy = self.perceiver.token_loss(perceived, is_first)
            terms["perceiver_tokens"] = cfg.perceiver_loss * token_ce
            terms["perceiver_vq"] = cfg.perceiver_loss * (perceived["commit"] + perceived["recon_mse"])
            total = total + terms["perceiver_tokens"] + terms["perceiver_vq"]
        if cfg.perceptual > 0:  # LPIPS on frames in [−1, 1]
            lpips = self._perceptual[0].to(decoded.device)
            terms["perceptual"] = cfg.perceptual * lpips(2 * decoded.float(), 2 * targets.float()).mean()
            total = total + terms["perceptual"]
        if cfg.adversarial > 0:
            if adversary is None:
                raise ValueError("loss.adversarial > 0 needs the discriminator: pass adversary= (make_adversary)")
            terms["adversarial"] = cfg.adversarial * adversary.generator_loss(decoded)
            total = total + terms["adversarial"]
        adversarial = {"adversarial": terms["adversarial"].item()} if "adversarial" in terms else {}
        if self.schema is not None:
            adversarial |= {"attention/prior_kl": attention_kl.item(), "attention/diversity": diversity.item(),
                            "attention/entropy_ratio": AttentionSchema.entropy_ratio(flat["attention"]).item(),
                            "attention/peak_over_uniform": (flat["attention"].amax(-1).mean()
                                                            * flat["attention"].shape[-1]).item()}  # fmt: skip
        if perceived is not None:
            adversarial |= {"perceiver/token_ce": token_ce.item(), "perceiver/token_accuracy": token_accuracy.item(),
                            "perceiver/vq_commit": perceived["commit"].item(),
                            "perceiver/patch_mse": perceived["recon_mse"].item(),
                            "perceiver/perplexity": perceived["perplexity"].item()}  # fmt: skip
        metrics = {
            **adversarial, "wm_loss": total.item(), "recon": recon_nll.item(),
            "recon_mse": recon_mse,
            "kl": kl_value.item(), "kl_dyn_loss": dyn.item(), "kl_rep_loss": rep.item(),
            "reward": reward.item(), "cont": cont.item(),
            "post_std": out["post_std"].mean().item(), **prior_terms, **self.prior.stats(out["prior"]),
        }  # fmt: skip
        out["reward"], out["cont"] = inputs["reward"], inputs["cont"]  # (B, T) targets, for the replay critic
        out["terms"] = terms  # the weighted terms of ``total``, by name (``loss_terms``), for the loss aggregator
        out["decoded"] = (decoded.detach(), targets)  # for the discriminator's own step
        return total, metrics, out

    # -- the trunk and its output, for multi-task gradient balancing ----------------------------------
    LOSS_TERMS = ("recon", "kl_dyn", "kl_rep", "reward", "cont")

    @property
    def loss_terms(self) -> tuple[str, ...]:
        """The names of this model's loss terms: LOSS_TERMS, the schema's with ``model.attention_schema``, the
        Perceiver's two with ``model.perceiver``, ``perceptual`` and ``adversarial`` when their weights are > 0."""
        perceiver = ("perceiver_tokens", "perceiver_vq") if self.perceiver is not None else ()
        schema = ("attention_prior", "attention_diversity") if self.schema is not None else ()
        schema += ("attention_entropy",) if schema and self.config.loss.attention_entropy > 0 else ()
        loss = self.config.loss
        decoded = ("perceptual",) * (loss.perceptual > 0) + ("adversarial",) * (loss.adversarial > 0)
        return self.LOSS_TERMS + schema + perceiver + decoded

    @staticmethod
    def representation(out: Mapping) -> list[Tensor]:
        """What every loss term reads from the trunk: deter (B,T,H), stoch (B,T,Z), post_mean and post_std
        (B,T,Z), and with the attention schema its stacked maps, slots and prior logits. These stacked tensors
        cut the graph (the recurrence uses the per-step ones), so backpropagating a gradient at them through the
        trunk gives exactly the trunk's share of the loss gradient."""
        schema = [out[k] for k in ("attention_attention", "attention_slots", "attention_prior_logits") if k in out]
        return [out["deter"], out["stoch"], out["post_mean"], out["post_std"], *schema]

    def trunk_parameters(self) -> list[nn.Parameter]:
        """Parameters shared by the loss terms: encoder, cell input, recurrent cell, posterior, the attention
        schema. (The Perceiver is not: its context enters the posterior detached unless
        ``model.perceiver_elbo_grad``.)"""
        modules = (self.encoder, self.cell_input, self.cell, self.posterior, self.schema)
        return [p for m in modules if m is not None for p in m.parameters()]

    def head_parameters(self) -> list[nn.Parameter]:
        """The rest (decoder, reward and continue heads, the prior net): task-specific."""
        trunk = {id(p) for p in self.trunk_parameters()}
        return [p for p in self.parameters() if id(p) not in trunk]
