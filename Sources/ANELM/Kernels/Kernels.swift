import CANELMKernels
import Foundation

/// anelm's numeric kernels: thin Swift names over the C microkernels (see CANELMKernels).
public enum Kernels {
    /// Elements below which an elementwise pass runs on the calling thread: splitting a decode step's
    /// few thousand values costs more than it saves; a prefill block's hundreds of thousands do not.
    public static let elementwiseGrain = 16_384

    /// The vector ISA levels the kernels are written for, lowest (the tests' reference) first: x86_64 has
    /// avx2, then avxvnni and avx512vnni (the matrix kernels with AVX-VNNI or with AVX512-VNNI + VL, each its
    /// own file; where a CPU has both the AVX-512 one is used), arm64 neon.
    public enum ISA: Int32, CaseIterable, Sendable {
        case portable = 0, avx2 = 1, avxvnni = 2, avx512vnni = 3, neon = 4

        /// As `anelm bench` and `info` show it.
        public var name: String {
            switch self {
            case .portable: "portable"
            case .avx2: "avx2"
            case .avxvnni: "avx2+vnni"
            case .avx512vnni: "avx512+vnni"
            case .neon: "neon"
            }
        }
    }

    /// The level in use: the best this CPU runs, unless capped (by `limitISA` or the environment variable
    /// `ANELM_ISA`, which takes the case names: portable, avx2, avxvnni, avx512vnni, neon).
    public static var isa: ISA { ISA(rawValue: anelm_isa_level()) ?? .portable }
    public static var isaName: String { isa.name }

    /// The levels this CPU runs, lowest first.
    public static var availableISAs: [ISA] { ISA.allCases.filter { anelm_isa_supported($0.rawValue) != 0 } }

    /// Caps the level: the kernels use the highest level this CPU runs at or below it (tests compare each
    /// level with the portable kernels); nil returns to the default, `ANELM_ISA`'s level or the best.
    public static func limitISA(_ level: ISA?) { anelm_limit_isa(level?.rawValue ?? -1) }

    /// `y[t, r] = Σ_c w[r, c] · x[t, c]` for `tokens` rows of `x`, split by rows over the pool.
    /// Quantized weights multiply 16-bit quantized activations (see anelm_block_q16).
    public static func matmul(_ w: WeightMatrix, _ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, tokens: Int, pool: ThreadPool) {
        matmul([(w, y)], x, tokens: tokens, pool: pool)
    }

    /// Several products of the same input (q/k/v, gate/up) in one pass over the pool: the input is
    /// quantized once and the workers synchronize once instead of once per matrix.
    public static func matmul(_ products: [(WeightMatrix, UnsafeMutablePointer<Float>)], _ x: UnsafePointer<Float>, tokens: Int, pool: ThreadPool) {
        guard tokens > 0, let cols = products.first?.0.cols else { return }
        precondition(products.allSatisfy { $0.0.cols == cols }, "products of one input need equal column counts")
        // Each form of the input that the products multiply, made once.
        var inputs: [ActivationForm: PreparedActivations] = [:]
        for form in Set(products.map { $0.0.activations }) where form != .f32 {
            inputs[form] = PreparedActivations(form, x, tokens: tokens, cols: cols, pool: pool)
        }
        defer { inputs.values.forEach { $0.deallocate() } }
        // Tasks of 16–512 KB of weights: small enough to balance, large enough to amortize.
        var tasks: [(product: Int, rows: Range<Int>)] = []
        let totalBytes = products.reduce(0) { $0 + $1.0.rows * $1.0.rowBytes }
        // At most 512 KB, so that a thread the host pauses mid-task (a shared VM) holds back little: the
        // others take the remaining tasks.
        let perTask = min(512 * 1024, max(16384, totalBytes / (pool.threads * 4)))
        for (index, (w, _)) in products.enumerated() {
            let rowsPerTask = max(1, perTask / max(w.rowBytes, 1))
            for start in stride(from: 0, to: w.rows, by: rowsPerTask) { tasks.append((index, start..<min(w.rows, start + rowsPerTask))) }
        }
        tasks.withUnsafeBufferPointer { tasks in
            pool.parallelFor(tasks.count) { i in
                let (w, y) = products[tasks[i].product]
                let r = tasks[i].rows
                let input = inputs[w.activations]
                anelm_matmul_rows(
                    Int32(w.type.rawValue), w.data, w.rowBytes, w.cols, input?.floats.map { UnsafePointer($0) } ?? (input == nil ? x : nil),
                    input?.blocks.map { UnsafePointer($0) }, input?.interleaved.map { UnsafePointer($0) }, tokens, y, w.rows, r.lowerBound, r.upperBound)
            }
        }
    }

    /// The input of a product in the form its weights multiply: rounded floats, or quantized blocks (and, for
    /// prefill, groups of eight tokens interleaved for the eight-token kernels).
    private struct PreparedActivations {
        var floats: UnsafeMutablePointer<Float>?
        var blocks: UnsafeMutablePointer<anelm_block_q16>?
        var interleaved: UnsafeMutablePointer<anelm_block_q16x8>?

        init(_ form: ActivationForm, _ x: UnsafePointer<Float>, tokens: Int, cols: Int, pool: ThreadPool) {
            if case .rounded(let type) = form {
                let floats = UnsafeMutablePointer<Float>.allocate(capacity: tokens * cols)
                anelm_round_f32(Int32(type.rawValue), x, floats, tokens * cols)
                self.floats = floats
                return
            }
            let blocks = cols / 32
            let buffer = UnsafeMutablePointer<anelm_block_q16>.allocate(capacity: tokens * blocks)
            pool.parallelRanges(tokens, minimum: max(1, elementwiseGrain / cols)) { rows in
                for t in rows {
                    if case .ggml(let kind) = form {
                        anelm_quantize_ggml(kind, x + t * cols, buffer + t * blocks, cols)
                    } else {
                        anelm_quantize_q16(x + t * cols, buffer + t * blocks, cols)
                    }
                }
            }
            self.blocks = buffer
            let groups = tokens / 8
            if groups > 0 {
                let interleaved = UnsafeMutablePointer<anelm_block_q16x8>.allocate(capacity: groups * blocks)
                pool.parallelRanges(groups) { range in
                    for g in range { anelm_interleave_q16x8(buffer + g * 8 * blocks, blocks, interleaved + g * blocks) }
                }
                self.interleaved = interleaved
            }
        }

        func deallocate() {
            floats?.deallocate()
            blocks?.deallocate()
            interleaved?.deallocate()
        }
    }

    /// `out = x / rms(x) · weight` (weight nil: no scale).
    public static func rmsNorm(_ x: UnsafePointer<Float>, weight: UnsafePointer<Float>?, eps: Float, count: Int, into out: UnsafeMutablePointer<Float>) {
        anelm_rms_norm(x, weight, eps, count, out)
    }

    public static func softmax(_ x: UnsafeMutablePointer<Float>, count: Int) { anelm_softmax(x, count) }

    /// `gate = silu(gate) · up`.
    public static func siluMul(gate: UnsafeMutablePointer<Float>, up: UnsafePointer<Float>, count: Int) { anelm_silu_mul(gate, up, count) }

    /// `y += x`.
    public static func addInPlace(_ y: UnsafeMutablePointer<Float>, _ x: UnsafePointer<Float>, count: Int) { anelm_add(y, x, count) }

    public static func dot(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, count: Int) -> Float { anelm_dot(a, b, count) }

    /// `y += a · x`.
    public static func axpy(_ a: Float, _ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, count: Int) { anelm_axpy(a, x, y, count) }

    public static func scale(_ x: UnsafeMutablePointer<Float>, by a: Float, count: Int) { anelm_scale(x, a, count) }
}

extension Kernels {
    /// `gate = gelu_tanh(gate) · up` (PyTorch's `gelu(approximate="tanh")`, Gemma's activation).
    public static func geluTanhMul(gate: UnsafeMutablePointer<Float>, up: UnsafePointer<Float>, count: Int) { anelm_gelu_tanh_mul(gate, up, count) }

    /// `x = gelu(x)` with the exact (erf) GELU (BERT's `hidden_act: gelu`).
    public static func gelu(_ x: UnsafeMutablePointer<Float>, count: Int) {
        for i in 0..<count { x[i] = 0.5 * x[i] * (1 + erff(x[i] * 0.7071067811865476)) }
    }

    /// `gate = gelu(gate) · up` with the exact (erf) GELU.
    public static func geluMul(gate: UnsafeMutablePointer<Float>, up: UnsafePointer<Float>, count: Int) {
        for i in 0..<count {
            let x = gate[i]
            gate[i] = 0.5 * x * (1 + erff(x * 0.7071067811865476)) * up[i]
        }
    }
}
