"""The pretraining objective (tokenizer + GPT + LM head) and the fine-tuning classifier (tokenizer + GPT + head).

Both take the particle model inputs (``x`` (B, F, N), ``mask`` (B, 1, N); other keys ignored) and turn them
into pT-ordered token sequences with the frozen tokenizer. Their modules share names (``tokenizer.*``,
``gpt.*``), so :meth:`VQGPTObjective.backbone_state_dict` (everything but the LM head) loads into the
classifier with every key consumed; the classifier's own ``head.*`` trains from scratch.

The tokenizer is fitted once (:func:`jetscale.pretrain.vq_gpt.prepare`) and then frozen everywhere: no gradient
reaches it (tokens are discrete; its parameters have ``requires_grad`` off) and the classifier keeps it in
eval mode, so even ``full`` fine-tuning leaves the tokens of a jet unchanged.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ...models.vq_gpt_options import VQGPTOptions, feature_columns, feature_names
from ..base import Objective, check_unlabelled
from .gpt import IGNORE, JetGPT, generate, pt_order, sequences
from .tokenizer import VQVAE


class TokenizedJets(nn.Module):
    """Shared by objective and classifier: the tokenizer, the GPT, and particle inputs → token sequences."""

    def __init__(self, width: int, n_features: int, opts: VQGPTOptions):
        super().__init__()
        self.opts, self.width = opts, width
        self.input_names = feature_names(n_features)
        self.columns = feature_columns(self.input_names, opts.features, "features")
        self.order_column = feature_columns(self.input_names, (opts.order_by,), "order_by")[0]
        self.token_names = tuple(self.input_names[c] for c in self.columns)
        self.tokenizer = VQVAE(len(self.columns), opts)
        self.tokenizer.requires_grad_(False)
        max_len = opts.max_particles + 2 if opts.position_embedding else None
        self.gpt = JetGPT(opts.vocab_size, width, opts.n_layers, opts.gpt_heads(width), opts.dropout, max_len)
        self.static_shapes = False  # True: the tokenizer encodes every slot (ONNX export), the same tokens

    def particles(self, x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Model inputs (B, F, N), (B, 1, N) → tokenized features (B, N, F_tok), mask (B, N) bool, order key (B, N)."""
        xt = x.transpose(1, 2).float()
        return xt[..., self.columns], mask[:, 0].bool(), xt[..., self.order_column]

    def tokens(self, x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """pT-ordered code indices (B, L) (-1 = padding) and particles per jet (B,)."""
        feats, m, key = self.particles(x, mask)
        with torch.no_grad(), torch.autocast(device_type=x.device.type, enabled=False):
            encode = self.tokenizer.encode_padded if self.static_shapes else self.tokenizer.encode
            codes = encode(feats, m)  # full precision: the same tokens under any autocast
        return pt_order(codes, m, key, self.opts.max_particles, sort=not self.static_shapes)


class VQGPTObjective(Objective, TokenizedJets):
    """Next-token cross-entropy of a GPT on the jets' token sequences (nats per predicted token)."""

    name = "vq_gpt"

    def __init__(self, width: int, n_features: int, opts: VQGPTOptions):
        TokenizedJets.__init__(self, width, n_features, opts)
        self.lm_head = nn.Linear(width, opts.vocab_size)

    def loss(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        check_unlabelled(batch)
        if not bool(self.tokenizer.fitted):
            raise RuntimeError("vq_gpt: the tokenizer is not fitted; call jetscale.pretrain.vq_gpt.prepare first")
        codes, n = self.tokens(batch["x"], batch["mask"])
        inputs, targets = sequences(codes, n, self.opts.start, self.opts.stop)
        logits = self.lm_head(self.gpt(inputs)).float()
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=IGNORE)
        with torch.no_grad():
            real = targets != IGNORE
            acc = (logits.argmax(-1) == targets)[real].float().mean()
        return loss, {"token_accuracy": float(acc), "tokens_per_jet": float(real.sum()) / len(n)}

    def backbone_state_dict(self) -> dict[str, torch.Tensor]:
        return {k: v for k, v in self.state_dict().items() if not k.startswith("lm_head.")}

    @torch.no_grad()
    def sample(
        self, n: int, *, temperature: float = 1.0, seed: int = 0, batch_size: int = 256
    ) -> dict[str, np.ndarray]:
        """``n`` generated jets: codes (n, L) (-1 after STOP), mask (n, L), decoded features (n, L, F_tok) in the
        model input's units (``token_names`` order), n_particles (n,). L = the longest generated jet."""
        was = self.training
        self.eval()
        gen = torch.Generator().manual_seed(seed)
        parts = []
        for start in range(0, n, batch_size):
            codes, length = generate(
                self.gpt,
                self.lm_head,
                min(batch_size, n - start),
                start=self.opts.start,
                stop=self.opts.stop,
                max_particles=self.opts.max_particles,
                temperature=temperature,
                generator=gen,
            )
            mask = codes >= 0
            parts.append((codes, mask, self.tokenizer.decode(codes, mask), length))
        self.train(was)
        width = max(p[0].shape[1] for p in parts)

        def pad(t, value):
            extra = width - t.shape[1]
            if extra == 0:
                return t
            shape = (t.shape[0], extra, *t.shape[2:])
            return torch.cat([t, torch.full(shape, value, dtype=t.dtype, device=t.device)], dim=1)

        return {
            "codes": torch.cat([pad(p[0], -1) for p in parts]).cpu().numpy(),
            "mask": torch.cat([pad(p[1], False) for p in parts]).cpu().numpy(),
            "features": torch.cat([pad(p[2], 0.0) for p in parts]).cpu().numpy(),
            "n_particles": torch.cat([p[3] for p in parts]).cpu().numpy(),
        }


class ClassifierHead(nn.Module):
    """OmniJet-alpha's summation head: ReLU(Linear) per position, pooled over the sequence, then Linear."""

    def __init__(self, width: int, n_classes: int, pooling: str):
        super().__init__()
        self.pooling = pooling
        self.embed = nn.Linear(width, width)
        self.out = nn.Linear(width, n_classes)

    def forward(self, h: torch.Tensor, valid: torch.Tensor, last: torch.Tensor) -> torch.Tensor:
        if self.pooling == "last":
            pooled = F.relu(self.embed(h[torch.arange(len(h), device=h.device), last]))
        else:
            e = F.relu(self.embed(h)) * valid.unsqueeze(-1)
            pooled = e.sum(1)
            if self.pooling == "mean":
                pooled = pooled / valid.sum(1, keepdim=True).clamp(min=1)
        return self.out(pooled)


class VQGPTClassifier(TokenizedJets):
    """Logits of ``START t_1 … t_n STOP`` through the (pretrained) GPT and a classification head."""

    def __init__(self, width: int, n_features: int, n_classes: int, opts: VQGPTOptions):
        super().__init__(width, n_features, opts)
        self.head = ClassifierHead(width, n_classes, opts.head)
        self.tokenizer.eval()

    def train(self, mode: bool = True):
        super().train(mode)
        self.tokenizer.eval()  # frozen: fitted once, never trained here
        return self

    def forward(self, x: torch.Tensor, mask: torch.Tensor, **_unused) -> torch.Tensor:
        codes, n = self.tokens(x, mask)
        inputs, _ = sequences(codes, n, self.opts.start, self.opts.stop)  # START t_1..t_n, then STOP filler
        stop = torch.full_like(inputs[:, :1], self.opts.stop)
        inputs = torch.cat([inputs, stop], dim=1)  # position n + 1 is STOP for every jet
        pos = torch.arange(inputs.shape[1], device=inputs.device).unsqueeze(0)
        valid = (pos <= (n + 1).unsqueeze(1)).to(torch.float32)
        return self.head(self.gpt(inputs), valid, n + 1)
