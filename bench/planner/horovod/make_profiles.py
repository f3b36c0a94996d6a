#!/usr/bin/python3
"""Hand-written loom model profiles for the Horovod scaling case (issue 18, docs/planner-horovod.md).

  /usr/bin/python3 bench/planner/horovod/make_profiles.py [--out-dir DIR] [--check]

Writes inception_v3.json, resnet101.json and vgg16.json (the JSON of
loom::plan::ModelProfile::to_json) next to this script. Nothing is measured: the
architectures are written out below as tables of convolutions and linear layers, and

- param_count / param_bytes per layer are counted from those tables (float32, 4 bytes;
  convolutions without bias are followed by batch norm with 2 parameters per channel,
  its running statistics are buffers, not parameters). Totals: VGG-16 138,357,544,
  ResNet-101 44,549,160, Inception V3 23,834,568 (no auxiliary head), the published
  138.4M / 44.5M / 23.8M;
- the step time at batch 64 is 64 / the published single-GPU images/s (Horovod README:
  Inception V3 134.4, ResNet-101 119.4, VGG-16 130.9 img/s on one Pascal GPU, batch 64),
  split across layers by each layer's share of multiply-accumulates (convolutions and
  linear layers only; batch norm, ReLU, pooling, the loss and the optimizer step are
  not counted separately, they are spread in proportion), and within a layer as
  forward = 1/3, backward = 2/3 (the usual "backward is twice forward": one product for
  the input's gradient, one for the weights');
- output_bytes is the layer's output activation at batch 64 in float32.

--check prints the per-layer table and the totals instead of only writing files.
Plain python3, no torch."""
import argparse
import json
import os

HERE = os.path.dirname(os.path.abspath(__file__))
BATCH = 64
FLOAT_BYTES = 4

# Published single-GPU rates (images/s, batch 64) and parameter counts, docs/planner.md
# "Sources for the accuracy study".
PUBLISHED = {
    "inception_v3": {"images_per_s": 134.4, "params_m": 23.8, "shape": [3, 299, 299]},
    "resnet101": {"images_per_s": 119.4, "params_m": 44.5, "shape": [3, 224, 224]},
    "vgg16": {"images_per_s": 130.9, "params_m": 138.4, "shape": [3, 224, 224]},
}


class Layer:
    """One coarse layer of the profile: a group of convolutions / linear layers."""

    def __init__(self, name):
        self.name = name
        self.params = 0
        self.macs = 0  # multiply-accumulates per sample, forward
        self.out_elems = 0  # output elements per sample

    def conv(self, cin, cout, kh, kw, hout, wout, bias=False, bn=True):
        self.params += cin * cout * kh * kw + (cout if bias else 0) + (2 * cout if bn else 0)
        self.macs += cin * cout * kh * kw * hout * wout
        return self

    def linear(self, fin, fout):
        self.params += fin * fout + fout
        self.macs += fin * fout
        return self

    def output(self, c, h, w=None):
        self.out_elems = c * h * (h if w is None else w)
        return self


def out_size(h, k, s=1, p=0):
    return (h + 2 * p - k) // s + 1


# ---- VGG-16 (Simonyan & Zisserman 2015, configuration D; torchvision vgg16) ----------
# 13 3x3 convolutions with bias, no batch norm, in 5 blocks each ended by a 2x2 max pool;
# then 25088 -> 4096 -> 4096 -> 1000.
def vgg16():
    layers = []
    h, cin = 224, 3
    for i, (cout, n) in enumerate([(64, 2), (128, 2), (256, 3), (512, 3), (512, 3)], start=1):
        l = Layer(f"block{i}")
        for _ in range(n):
            l.conv(cin, cout, 3, 3, h, h, bias=True, bn=False)
            cin = cout
        h //= 2
        layers.append(l.output(cout, h))
    layers.append(Layer("fc6").linear(512 * 7 * 7, 4096).output(4096, 1, 1))
    layers.append(Layer("fc7").linear(4096, 4096).output(4096, 1, 1))
    layers.append(Layer("fc8").linear(4096, 1000).output(1000, 1, 1))
    return layers


# ---- ResNet-101 (He et al. 2016; torchvision resnet101, "v1.5": the stride in the 3x3) --
# conv1 7x7/2 + max pool, then bottleneck blocks [3, 4, 23, 3] of widths 64/128/256/512
# (expansion 4), the first block of each stage with a 1x1 projection; average pool, fc.
# One profile layer per bottleneck block (35 layers: stem, 33 blocks, fc).
def resnet101():
    layers = []
    h = out_size(224, 7, 2, 3)  # 112
    stem = Layer("stem").conv(3, 64, 7, 7, h, h)
    h = out_size(h, 3, 2, 1)  # 56
    layers.append(stem.output(64, h))
    cin = 64
    for stage, (width, blocks, stride) in enumerate([(64, 3, 1), (128, 4, 2), (256, 23, 2), (512, 3, 2)], start=1):
        for b in range(blocks):
            s = stride if b == 0 else 1
            hout = h // s
            l = Layer(f"layer{stage}.{b}")
            l.conv(cin, width, 1, 1, h, h)
            l.conv(width, width, 3, 3, hout, hout)
            l.conv(width, width * 4, 1, 1, hout, hout)
            if b == 0:
                l.conv(cin, width * 4, 1, 1, hout, hout)  # projection
            cin, h = width * 4, hout
            layers.append(l.output(cin, h))
    layers.append(Layer("fc").linear(2048, 1000).output(1000, 1, 1))
    return layers


# ---- Inception V3 (Szegedy et al. 2016; torchvision inception_v3 without the auxiliary --
# classifier, which training with tf_cnn_benchmarks' defaults also leaves out: unchecked).
# Every convolution is BasicConv2d: no bias, batch norm. One profile layer per stem
# convolution and per Inception module (17 layers).
def inception_v3():
    layers = []
    h = 299

    def stem(name, cin, cout, k, s=1, p=0):
        nonlocal h
        h = out_size(h, k, s, p)
        layers.append(Layer(name).conv(cin, cout, k, k, h, h).output(cout, h))

    stem("Conv2d_1a_3x3", 3, 32, 3, 2)  # 149
    stem("Conv2d_2a_3x3", 32, 32, 3)  # 147
    stem("Conv2d_2b_3x3", 32, 64, 3, 1, 1)  # 147
    h = out_size(h, 3, 2)  # max pool: 73
    stem("Conv2d_3b_1x1", 64, 80, 1)  # 73
    stem("Conv2d_4a_3x3", 80, 192, 3)  # 71
    h = out_size(h, 3, 2)  # max pool: 35

    def inception_a(name, cin, pool):
        l = Layer(name)
        l.conv(cin, 64, 1, 1, h, h)
        l.conv(cin, 48, 1, 1, h, h).conv(48, 64, 5, 5, h, h)
        l.conv(cin, 64, 1, 1, h, h).conv(64, 96, 3, 3, h, h).conv(96, 96, 3, 3, h, h)
        l.conv(cin, pool, 1, 1, h, h)
        layers.append(l.output(64 + 64 + 96 + pool, h))
        return 64 + 64 + 96 + pool

    def inception_b(name, cin):  # grid reduction 35 -> 17
        nonlocal h
        ho = out_size(h, 3, 2)
        l = Layer(name)
        l.conv(cin, 384, 3, 3, ho, ho)
        l.conv(cin, 64, 1, 1, h, h).conv(64, 96, 3, 3, h, h).conv(96, 96, 3, 3, ho, ho)
        h = ho
        layers.append(l.output(384 + 96 + cin, h))
        return 384 + 96 + cin

    def inception_c(name, cin, c7):
        l = Layer(name)
        l.conv(cin, 192, 1, 1, h, h)
        l.conv(cin, c7, 1, 1, h, h).conv(c7, c7, 1, 7, h, h).conv(c7, 192, 7, 1, h, h)
        l.conv(cin, c7, 1, 1, h, h).conv(c7, c7, 7, 1, h, h).conv(c7, c7, 1, 7, h, h)
        l.conv(c7, c7, 7, 1, h, h).conv(c7, 192, 1, 7, h, h)
        l.conv(cin, 192, 1, 1, h, h)
        layers.append(l.output(768, h))
        return 768

    def inception_d(name, cin):  # grid reduction 17 -> 8
        nonlocal h
        ho = out_size(h, 3, 2)
        l = Layer(name)
        l.conv(cin, 192, 1, 1, h, h).conv(192, 320, 3, 3, ho, ho)
        l.conv(cin, 192, 1, 1, h, h).conv(192, 192, 1, 7, h, h).conv(192, 192, 7, 1, h, h)
        l.conv(192, 192, 3, 3, ho, ho)
        h = ho
        layers.append(l.output(320 + 192 + cin, h))
        return 320 + 192 + cin

    def inception_e(name, cin):
        l = Layer(name)
        l.conv(cin, 320, 1, 1, h, h)
        l.conv(cin, 384, 1, 1, h, h).conv(384, 384, 1, 3, h, h).conv(384, 384, 3, 1, h, h)
        l.conv(cin, 448, 1, 1, h, h).conv(448, 384, 3, 3, h, h)
        l.conv(384, 384, 1, 3, h, h).conv(384, 384, 3, 1, h, h)
        l.conv(cin, 192, 1, 1, h, h)
        layers.append(l.output(2048, h))
        return 2048

    c = inception_a("Mixed_5b", 192, 32)
    c = inception_a("Mixed_5c", c, 64)
    c = inception_a("Mixed_5d", c, 64)
    c = inception_b("Mixed_6a", c)
    c = inception_c("Mixed_6b", c, 128)
    c = inception_c("Mixed_6c", c, 160)
    c = inception_c("Mixed_6d", c, 160)
    c = inception_c("Mixed_6e", c, 192)
    c = inception_d("Mixed_7a", c)
    c = inception_e("Mixed_7b", c)
    c = inception_e("Mixed_7c", c)
    layers.append(Layer("fc").linear(c, 1000).output(1000, 1, 1))
    return layers


MODELS = {"inception_v3": inception_v3, "resnet101": resnet101, "vgg16": vgg16}


def profile(name):
    layers = MODELS[name]()
    pub = PUBLISHED[name]
    step_s = BATCH / pub["images_per_s"]
    total_macs = sum(l.macs for l in layers)
    out = {
        "model": name,
        "sample_shape": pub["shape"],
        "threads": 1,
        "repeats": 0,  # not measured: written from the architecture and published rates
        "batches": [BATCH],
        "param_count": sum(l.params for l in layers),
        # The whole step = the layers' sum: the optimizer step, data and framework time
        # are inside the per-layer split (not known apart from the published rate).
        "step_s": [step_s],
        # tf_cnn_benchmarks' default optimizer is plain SGD, no state (unchecked).
        "optimizer": "sgd",
        "optimizer_s": 0.0,
        "optimizer_state_bytes": 0,
        "layers": [],
    }
    for l in layers:
        share = l.macs / total_macs
        out["layers"].append({
            "name": l.name,
            "param_count": l.params,
            "param_bytes": l.params * FLOAT_BYTES,
            "times": [{
                "batch": BATCH,
                "forward_s": step_s * share / 3,
                "backward_s": step_s * share * 2 / 3,
                "output_bytes": l.out_elems * BATCH * FLOAT_BYTES,
            }],
        })
    return out, layers, total_macs


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out-dir", default=HERE)
    ap.add_argument("--check", action="store_true", help="print the per-layer table and totals")
    args = ap.parse_args()
    for name in MODELS:
        prof, layers, total_macs = profile(name)
        params = prof["param_count"]
        pub = PUBLISHED[name]
        # The totals must round to the published counts.
        assert round(params / 1e6, 1) == pub["params_m"], (name, params)
        step = sum(t["forward_s"] + t["backward_s"] for l in prof["layers"] for t in l["times"])
        assert abs(step - BATCH / pub["images_per_s"]) < 1e-12, (name, step)
        path = os.path.join(args.out_dir, name + ".json")
        with open(path, "w") as f:
            json.dump(prof, f, indent=1)
            f.write("\n")
        print(f"{name}: {len(layers)} layers, {params:,} parameters ({params * 4 / 2**20:.1f} MiB), "
              f"{total_macs / 1e9:.2f} GMAC/sample, step {step:.4f} s at batch {BATCH} -> {path}")
        if args.check:
            for l in layers:
                print(f"  {l.name:14s} params {l.params:>11,}  MACs {l.macs / 1e6:9.1f}M "
                      f"({100 * l.macs / total_macs:5.2f}%)  out {l.out_elems:>9,}/sample")


if __name__ == "__main__":
    main()
