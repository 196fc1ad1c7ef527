"""BBT binary tokenization: a jet becomes a sequence of bytes, grouped into fixed-size patches.

Layout of one jet (particles in energy order, as stored in the splits)::

    BOS | idx_0 SEP v_0,0 ... v_0,18 | idx_1 SEP v_1,0 ... | ... | EOS | PAD PAD ...

* ``idx`` is the particle's position in energy order, one byte (so at most 256 particles per jet).
* ``v`` are the 19 Table-1 attributes (``jetscale.data.schema.FEATURE_NAMES`` order).
  - ``mode="native"``: the little-endian IEEE-754 bytes of each value (``dtype`` float32 = 4 bytes, default;
    float16 = 2 bytes). Fixed width, so decoding is by position and round-trips exactly (bit for bit, after the
    cast to ``dtype``).
  - ``mode="text"``: the UTF-8 (ASCII) of each value as a fixed-precision decimal (``precision`` digits after
    the point), values separated by ``,``; the index is written as decimal digits. Variable width.
* Special bytes: ``BOS = 0x02`` (STX), ``EOS = 0x03`` (ETX), ``SEP = 0x1F`` (unit separator). In native mode
  these values can also occur inside a float's bytes; that is harmless because the layout is fixed-width and
  the model sees positions. In text mode they never occur inside a record.
* Vocabulary: 257 = bytes 0..255 plus ``PAD = 256``.

Length: every sequence has ``seq_len = ceil(max_bytes / patch_size) * patch_size`` tokens. A jet whose
encoding is longer keeps only the leading (highest-energy) particles that fit together with BOS and EOS; such
jets are counted as *truncated*. Patches: ``(n, seq_len) -> (n, n_patches, patch_size)``; a patch is
*valid* when it holds at least one real (non-PAD) byte, so padding-only patches are masked while the boundary
patch that carries EOS (real bytes followed by PAD) stays visible: it is the last valid position, the one the
classifier reads.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from ..options import parse
from .options import TokenizerOptions

BOS, EOS, SEP, PAD = 0x02, 0x03, 0x1F, 256
VOCAB_SIZE = 257
_DTYPES = {"float32": np.dtype("<f4"), "float16": np.dtype("<f2")}
# Text mode fast path: |v| * 10**precision below 2**49 (at most 15 digits; float64 ulp there <= 1/8).
_TEXT_FAST_LIMIT = float(2**49)
_TEXT_MAX_PRECISION = 15
_POW10 = 10 ** np.arange(16, dtype=np.int64)


@dataclass(frozen=True)
class ByteTokenizer(TokenizerOptions):
    """The tokenizer with the options of config ``models.bbt_neutron.tokenizer`` (defaults: TokenizerOptions)."""

    @classmethod
    def from_options(cls, options: dict | TokenizerOptions | None) -> ByteTokenizer:
        """From a config mapping (unknown keys refused) or a :class:`TokenizerOptions`."""
        if isinstance(options, TokenizerOptions):
            options = dataclasses.asdict(options)
        return parse(cls, options, "tokenizer")

    @property
    def seq_len(self) -> int:
        return -(-self.max_bytes // self.patch_size) * self.patch_size

    @property
    def n_patches(self) -> int:
        return self.seq_len // self.patch_size

    def record_bytes(self, n_features: int) -> int:
        """Bytes per particle in native mode: index + SEP + the attribute bytes."""
        return 2 + n_features * _DTYPES[self.dtype].itemsize

    def encode(self, features: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``features`` (n, P, F) float, ``mask`` (n, P) bool -> tokens (n, seq_len) int16 and truncated (n,) bool."""
        features = np.asarray(features)
        mask = np.asarray(mask, dtype=bool)
        if features.shape[1] > 256:
            raise ValueError(
                "byte tokenization stores the particle index in one byte: "
                f"at most 256 particles, got {features.shape[1]}"
            )
        if self.mode == "native":
            return self._encode_native(features, mask)
        return self._encode_text(features, mask)

    def _encode_native(self, features, mask):
        n, P, F = features.shape
        L = self.seq_len
        R = self.record_bytes(F)
        if P > 1 and not (mask[:, 1:] <= mask[:, :-1]).all():  # the splits' masks are prefixes: nothing to move
            order = np.argsort(~mask, axis=1, kind="stable")  # valid particles first, energy order kept
            features = np.take_along_axis(features, order[:, :, None], axis=1)
        n_valid = mask.sum(axis=1)
        n_keep = np.minimum(n_valid, (L - 2) // R)
        records = np.empty((n, P, R), dtype=np.uint8)
        records[:, :, 0] = np.arange(P, dtype=np.uint8)[None, :]
        records[:, :, 1] = SEP
        records[:, :, 2:] = np.ascontiguousarray(features, dtype=_DTYPES[self.dtype]).view(np.uint8).reshape(n, P, -1)
        body = records.reshape(n, P * R)
        tokens = np.full((n, L), PAD, dtype=np.int16)
        tokens[:, 0] = BOS
        ends = n_keep * R
        # one copy of each jet's kept records: a tenth of the time of a masked pass over the padded batch
        for jet, end in enumerate(ends.tolist()):
            tokens[jet, 1 : 1 + end] = body[jet, :end]
        tokens[np.arange(n), 1 + ends] = EOS
        return tokens, n_valid > n_keep

    def _encode_text(self, features, mask):
        """Vectorised text mode: byte for byte the output of :meth:`_encode_text_reference`.

        A value is written like ``format(float(v), f".{p}f")``: ``-`` when the sign bit is set (so ``-0.0`` and
        negatives that round to zero keep it), then ``q = round(|v| * 10**p)`` (Python rounds the exact binary
        value, ties to even) as digits with the point ``p`` digits from the right. ``y = |v| * 10**p`` is one
        correctly rounded float64 multiplication (``10**p`` is exact), so ``floor`` and ``> .5`` on it give
        Python's rounding unless ``y`` is exactly ``k + .5`` (the exact product may then lie on either side, or
        on it); those values, NaN, inf and values with ``y >= 2**49`` are formatted by Python one by one (rare;
        for float32 inputs and small ``p`` the product is exact, so only true ties). Inputs outside the fast
        path (non-real dtypes, precision outside 0..15, no features) go to the reference loop.

        Layout: every kept particle is a row of ``F + 1`` right-aligned fields of a common width in a uint8 matrix
        (``idx SEP``, then ``value ,`` ... ``value ;``); the real bytes of the matrix in C order are the jets'
        records back to back, and they fill each row of ``tokens`` after BOS in C order too.
        """
        p = self.precision
        fast_precision = isinstance(p, (int, np.integer)) and not isinstance(p, bool) and 0 <= p <= _TEXT_MAX_PRECISION
        n, P, F = features.shape
        if features.dtype.kind not in "biuf" or not fast_precision or F == 0:
            return self._encode_text_reference(features, mask)
        p = int(p)
        L = self.seq_len
        jet, part = np.nonzero(mask)  # valid particles, jet by jet, in particle order (the reference's order)
        x = features[jet, part].astype(np.float64)  # (V, F); float16/32, ints and bools convert as format() does

        sign, fast, q, width, slow, slow_text = _text_values(x, p)

        # Records "idx SEP v,...,v;": the leading ones of each jet that fit between BOS and EOS.
        n_idx = 1 + (part >= 10) + (part >= 100)
        rec_len = n_idx + 1 + width.sum(axis=1) + F  # F - 1 commas and ';'
        start = np.cumsum(rec_len) - rec_len  # exclusive, over all jets
        first = np.searchsorted(jet, np.arange(n))  # each jet's first valid particle
        keep = start - start[first[jet]] + rec_len <= L - 2  # lengths are positive: a prefix of each jet
        truncated = np.zeros(n, dtype=bool)
        truncated[jet[~keep]] = True
        used = np.bincount(jet[keep], weights=rec_len[keep], minlength=n).astype(np.int64)
        kept_slow = np.repeat(keep, F)[slow]
        texts = [t for t, kk in zip(slow_text, kept_slow.tolist()) if kk]
        stream = _text_fields(part[keep], n_idx[keep], q[keep], width[keep], sign[keep], fast[keep], texts, p)

        tokens = np.full((n, L), PAD, dtype=np.int16)
        cols = np.arange(L)
        tokens[(cols >= 1) & (cols <= used[:, None])] = stream
        tokens[:, 0] = BOS
        tokens[np.arange(n), 1 + used] = EOS
        return tokens, truncated

    def _encode_text_reference(self, features, mask):
        """The original per-particle Python loop: the definition of text mode.

        Kept here (not only in the tests) because :meth:`_encode_text` falls back to it for inputs its fast path
        does not cover (non-real dtypes, precision outside 0..15, no features), and the tests compare the two.
        """
        n, P, F = features.shape
        L = self.seq_len
        tokens = np.full((n, L), PAD, dtype=np.int16)
        truncated = np.zeros(n, dtype=bool)
        fmt = f"{{:.{self.precision}f}}"
        for j in range(n):
            parts = [bytes([BOS])]
            used = 2  # BOS + EOS
            for i in np.flatnonzero(mask[j]):
                rec = str(i).encode() + bytes([SEP]) + ",".join(fmt.format(v) for v in features[j, i]).encode()
                if used + len(rec) + 1 > L:  # +1: the ';' particle terminator
                    truncated[j] = True
                    break
                parts.append(rec + b";")
                used += len(rec) + 1
            parts.append(bytes([EOS]))
            blob = np.frombuffer(b"".join(parts), dtype=np.uint8)
            tokens[j, : len(blob)] = blob
        return tokens, truncated

    def decode(self, tokens: np.ndarray, n_features: int) -> tuple[np.ndarray, np.ndarray]:
        """One jet's tokens -> (particle indices (k,), features (k, F)); inverse of :meth:`encode`."""
        tokens = np.asarray(tokens)
        real = np.flatnonzero(tokens != PAD)
        if tokens[0] != BOS or tokens[real[-1]] != EOS:
            raise ValueError("not a BBT byte sequence: must start with BOS and end with EOS")
        body = tokens[1 : real[-1]].astype(np.uint8)
        if self.mode == "native":
            R = self.record_bytes(n_features)
            rec = body.reshape(-1, R)
            values = np.ascontiguousarray(rec[:, 2:]).view(_DTYPES[self.dtype]).reshape(len(rec), n_features)
            return rec[:, 0].astype(np.int64), values
        idx, vals = [], []
        for chunk in bytes(body).split(b";")[:-1]:
            i, _, rest = chunk.partition(bytes([SEP]))
            idx.append(int(i))
            vals.append([float(v) for v in rest.split(b",")])
        return np.array(idx, dtype=np.int64), np.array(vals, dtype=np.float32).reshape(len(idx), n_features)

    def patches(self, tokens: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """tokens (n, seq_len) -> patches (n, n_patches, patch_size) and patch mask (n, n_patches) bool.

        ``tokens`` as :meth:`encode` writes them, real tokens then PAD alone, so a patch holds a real token
        exactly when its first one is (a sixteenth of the reads of looking at every token)."""
        n = tokens.shape[0]
        patches = tokens.reshape(n, -1, self.patch_size)
        return patches, patches[:, :, 0] != PAD


def model_inputs(options, features, mask, vectors=None, model_features=None) -> tuple[dict[str, np.ndarray], dict]:
    """The catalog's "bytes" input kind: byte patches of ``options.tokenizer`` and truncation counts (of
    ``model_features``, the input spec's transformed features, where given)."""
    tok = ByteTokenizer.from_options(options.tokenizer)
    tokens, truncated = tok.encode(features if model_features is None else model_features, mask)
    patches, patch_mask = tok.patches(tokens)
    info = {"truncated_jets": int(truncated.sum()), "n_jets": int(len(tokens)), "seq_len": tok.seq_len}
    return {"patches": patches, "patch_mask": patch_mask}, info


def _text_values(x: np.ndarray, p: int):
    """Each value of ``x`` (V, F) at precision ``p``: (sign, fast, q, width, slow, slow_text). On the fast path
    the integer ``q`` and the width of its text; at the flat indices ``slow`` Python's own string."""
    sign = np.signbit(x)
    with np.errstate(invalid="ignore", over="ignore"):
        y = np.abs(x) * (10.0**p)
        fast = y < _TEXT_FAST_LIMIT  # False for NaN and inf
    y[~fast] = 0.0
    fl = np.floor(y)
    fr = y - fl  # exact
    # Rounding is monotone and k + .5 is a float64 here, so y is on the same side of k + .5 as the exact
    # product unless it lands on it: only then is Python's answer (exact value, ties to even) unknown.
    fast &= fr != 0.5
    q = fl.astype(np.int64) + (fr > 0.5)
    n_int = np.searchsorted(_POW10[1:], q // _POW10[p], side="right") + 1  # digits before the point
    width = sign + n_int + (p + 1 if p else 0)
    slow = np.flatnonzero(~fast)  # into the flattened (V, F)
    spec = f".{p}f"
    slow_text = [format(v, spec).encode() for v in x.ravel()[slow].tolist()]
    width.ravel()[slow] = [len(t) for t in slow_text]
    return sign, fast, q, width, slow, slow_text


def _text_fields(kpart, n_idx, qq, width, sign, kfast, texts: list[bytes], p: int) -> np.ndarray:
    """The kept particles' records as one byte stream: their fields right-aligned in rows of a common width W
    (last column: SEP , or ;), whose real bytes in C order are the records back to back. ``texts``: Python's
    strings of the kept slow-path values, in order."""
    K, F = width.shape
    field = np.empty((K, F + 1), dtype=np.int64)  # field widths, terminator included
    field[:, 0] = n_idx + 1
    field[:, 1:] = width + 1
    W = int(field.max()) if K else 1
    M = np.empty((K, F + 1, W), dtype=np.uint8)
    M[:, 0, W - 1] = SEP
    M[:, 1:, W - 1] = ord(",")
    M[:, F, W - 1] = ord(";")
    for r in range(1, min(4, W)):
        M[:, 0, W - 1 - r] = kpart // _POW10[r - 1] % 10 + ord("0")
    for r in range(1, int(field[:, 1:][kfast].max(initial=1))):  # r-th column from the right
        if p and r == p + 1:
            M[:, 1:, W - 1 - r] = ord(".")
        else:
            qq, digit = np.divmod(qq, 10)
            M[:, 1:, W - 1 - r] = digit + ord("0")
    neg = np.flatnonzero((sign & kfast).ravel())
    k, f = np.divmod(neg, F)
    M[k, f + 1, W - field[:, 1:].ravel()[neg]] = ord("-")
    if texts:  # Python's strings, joined and scattered in one go
        lens = np.array([len(t) for t in texts], dtype=np.int64)
        at = np.flatnonzero(~kfast.ravel())  # the same values, in the same order, indexed in (K, F)
        k, f = np.divmod(at, F)
        row_end = (k * (F + 1) + f + 1) * W + W - 1  # the terminator's position in M.ravel()
        offset = np.repeat(row_end - lens - (np.cumsum(lens) - lens), lens)
        M.reshape(-1)[offset + np.arange(len(offset))] = np.frombuffer(b"".join(texts), dtype=np.uint8)
    return M[np.arange(W) >= W - field[:, :, None]]
