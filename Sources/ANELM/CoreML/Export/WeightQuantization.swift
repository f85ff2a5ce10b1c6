import CANELMKernels

/// How the export stores the conv weights and the embedding table: fp16 as is, or compressed with
/// Core ML's iOS 18 constexpr ops (decompressed by Core ML when it loads the model). Which of them the
/// Neural Engine keeps (issue #20): palettization runs there in every public device report; int8 with one
/// scale per output channel is what the ANE supports for linear quantization (coremltools issue 2510),
/// though one report saw linear-quantized conv weights placed on the CPU; per-block int8 scales fall back
/// to the CPU (issue 2510) and lost accuracy on an iPhone's ANE (apple/coreai-models issue 279).
public enum ANEWeightFormat: String, CaseIterable, Sendable {
    /// fp16 constants (the default).
    case fp16
    /// Symmetric int8 with one fp16 scale per output channel (`constexpr_blockwise_shift_scale`, one block
    /// spanning all input channels).
    case int8
    /// Symmetric int8 with one fp16 scale per block of 32 input channels: CPU-bound on the ANE, kept only
    /// to compare against.
    case int8Blockwise = "int8-blockwise"
    /// Palettized: 4-, 6- or 8-bit indices into a 16-, 64- or 256-entry fp16 table per group of output
    /// channels (`constexpr_lut_to_dense`).
    case lut4, lut6, lut8

    /// Output channels per LUT by default: "a group size of 8 or 16 gives good accuracy while still
    /// increasing speed" (coremltools guide, Palettization > Performance, per_grouped_channel on iOS 18).
    public static let defaultLUTGroup = 16

    /// Bits per palette index, nil for the other formats.
    public var lutBits: Int? {
        switch self {
        case .lut4: return 4
        case .lut6: return 6
        case .lut8: return 8
        case .fp16, .int8, .int8Blockwise: return nil
        }
    }

    public init(parsing name: String) throws {
        guard let format = ANEWeightFormat(rawValue: name) else {
            throw ANELMError("--weights must be one of: \(Self.allCases.map(\.rawValue).joined(separator: ", ")); got '\(name)'")
        }
        self = format
    }
}

/// Largest divisor of `n` that is at most `limit`: blocks and groups must tile a dimension exactly.
func divisor(of n: Int, atMost limit: Int) -> Int {
    var d = min(n, limit)
    while d > 1 && n % d != 0 { d -= 1 }
    return max(d, 1)
}

/// How far a compressed weight is from its fp16 source.
public struct QuantizationError: Sendable {
    public var squaredError = 0.0, squaredSource = 0.0, maxAbsolute = 0.0

    /// ‖source − reconstruction‖ / ‖source‖.
    public var relativeRMS: Double { squaredSource > 0 ? (squaredError / squaredSource).squareRoot() : 0 }

    mutating func add(_ source: [Float], _ reconstruction: [Float]) {
        for (s, r) in zip(source, reconstruction) {
            let e = Double(s - r)
            squaredError += e * e
            squaredSource += Double(s) * Double(s)
            maxAbsolute = max(maxAbsolute, Swift.abs(e))
        }
    }

    mutating func add(_ other: QuantizationError) {
        squaredError += other.squaredError
        squaredSource += other.squaredSource
        maxAbsolute = max(maxAbsolute, other.maxAbsolute)
    }
}

func floats(fromFP16 bits: [UInt16]) -> [Float] {
    var out = [Float](repeating: 0, count: bits.count)
    bits.withUnsafeBufferPointer { b in out.withUnsafeMutableBufferPointer { anelm_convert_f16_to_f32(b.baseAddress, $0.baseAddress, bits.count) } }
    return out
}

func fp16Bits(_ values: [Float]) -> [UInt16] {
    var out = [UInt16](repeating: 0, count: values.count)
    values.withUnsafeBufferPointer { v in out.withUnsafeMutableBufferPointer { anelm_convert_f32_to_f16(v.baseAddress, $0.baseAddress, values.count) } }
    return out
}

/// A (rows, cols) matrix as symmetric int8 in blocks of `block` columns, one fp16 scale per block:
/// value = scale · q, the semantics of `constexpr_blockwise_shift_scale` without an offset.
public struct BlockwiseInt8: Sendable {
    public let rows: Int, cols: Int, block: Int
    /// rows × cols, row-major.
    public let data: [Int8]
    /// rows × (cols / block) fp16 bit patterns.
    public let scales: [UInt16]

    public init(fp16 weights: [UInt16], rows: Int, cols: Int, block: Int) {
        precondition(weights.count == rows * cols && cols % block == 0)
        self.rows = rows
        self.cols = cols
        self.block = block
        let w = floats(fromFP16: weights)
        let blocks = cols / block
        var data = [Int8](repeating: 0, count: w.count)
        var scales = [UInt16](repeating: 0, count: rows * blocks)
        for b in 0..<(rows * blocks) {
            let start = (b / blocks) * cols + (b % blocks) * block
            var amax: Float = 0
            for i in start..<(start + block) { amax = max(amax, Swift.abs(w[i])) }
            // The scale is rounded to fp16 first, and q computed against the rounded scale.
            scales[b] = anelm_f32_to_f16(amax / 127)
            let s = anelm_f16_to_f32(scales[b])
            guard s > 0 else { continue }
            for i in start..<(start + block) { data[i] = Int8(max(-127, min(127, (w[i] / s).rounded(.toNearestOrEven)))) }
        }
        self.data = data
        self.scales = scales
    }

    public func dequantized() -> [Float] {
        let blocks = cols / block
        return data.indices.map { i in anelm_f16_to_f32(scales[(i / cols) * blocks + (i % cols) / block]) * Float(data[i]) }
    }
}

/// A (rows, cols) matrix palettized: each group of `groupRows` rows has a table of 2^bits fp16 values
/// (1-D k-means of the group's weights) and each weight the index of its nearest table entry, the
/// semantics of `constexpr_lut_to_dense` with one LUT per group of output channels.
public struct Palettized: Sendable {
    public let rows: Int, cols: Int, bits: Int, groupRows: Int
    /// rows × cols indices, one per byte (packed with `packSubByte` for the blob).
    public let indices: [UInt8]
    /// (rows / groupRows) × 2^bits fp16 bit patterns, each group's table ascending.
    public let lut: [UInt16]

    public init(fp16 weights: [UInt16], rows: Int, cols: Int, bits: Int, groupRows: Int, iterations: Int = 50) {
        precondition(weights.count == rows * cols && rows % groupRows == 0)
        self.rows = rows
        self.cols = cols
        self.bits = bits
        self.groupRows = groupRows
        let w = floats(fromFP16: weights)
        let k = 1 << bits
        let groupSize = groupRows * cols
        var indices = [UInt8](repeating: 0, count: w.count)
        var lut = [UInt16]()
        lut.reserveCapacity(rows / groupRows * k)
        for g in 0..<(rows / groupRows) {
            let range = (g * groupSize)..<((g + 1) * groupSize)
            let table = Self.kMeans(sorted: w[range].sorted(), k: k, iterations: iterations)
            let bitsTable = fp16Bits(table)
            let entries = floats(fromFP16: bitsTable)
            lut += bitsTable
            for i in range { indices[i] = UInt8(Self.nearest(w[i], in: entries)) }
        }
        self.indices = indices
        self.lut = lut
    }

    public func dequantized() -> [Float] {
        let k = 1 << bits
        let groupSize = groupRows * cols
        return indices.indices.map { i in anelm_f16_to_f32(lut[(i / groupSize) * k + Int(indices[i])]) }
    }

    /// Lloyd's k-means in one dimension: on sorted values every cluster is a contiguous run, so each
    /// iteration is k binary searches and k means from prefix sums. Lloyd stops in local optima, so it
    /// starts twice, from the k quantiles and from k evenly spaced values, and keeps the smaller error.
    static func kMeans(sorted x: [Float], k: Int, iterations: Int) -> [Float] {
        let n = x.count
        guard n > 0, let lo = x.first, let hi = x.last else { return [Float](repeating: 0, count: k) }
        var sum = [Double](repeating: 0, count: n + 1)
        var squares = sum
        for i in 0..<n {
            sum[i + 1] = sum[i] + Double(x[i])
            squares[i + 1] = squares[i] + Double(x[i]) * Double(x[i])
        }
        /// Each cluster's run [start, end): the values up to the midpoint with the next centroid.
        func runs(_ c: [Float]) -> [Range<Int>] {
            var start = 0
            return (0..<k).map { j in
                let end = j == k - 1 ? n : max(start, upperBound(x, (c[j] + c[j + 1]) / 2, from: start))
                defer { start = end }
                return start..<end
            }
        }
        func lloyd(_ initial: [Float]) -> (centroids: [Float], error: Double) {
            var c = initial
            for _ in 0..<iterations {
                var next = c
                for (j, r) in runs(c).enumerated() where !r.isEmpty { next[j] = Float((sum[r.upperBound] - sum[r.lowerBound]) / Double(r.count)) }
                next.sort()
                if next == c { break }
                c = next
            }
            // Squared error of the runs around their centroids: Σx² − 2cΣx + c²·count.
            let error = zip(runs(c), c).reduce(0.0) { total, rc in
                let (r, m) = (rc.0, Double(rc.1))
                return total + (squares[r.upperBound] - squares[r.lowerBound]) - 2 * m * (sum[r.upperBound] - sum[r.lowerBound]) + m * m * Double(r.count)
            }
            return (c, error)
        }
        let quantiles = lloyd((0..<k).map { x[min(n - 1, (2 * $0 + 1) * n / (2 * k))] })
        let even = lloyd((0..<k).map { lo + (hi - lo) * Float($0) / Float(max(k - 1, 1)) })
        return even.error < quantiles.error ? even.centroids : quantiles.centroids
    }

    /// First index in sorted `x[from...]` whose value is greater than `value`.
    static func upperBound(_ x: [Float], _ value: Float, from: Int) -> Int {
        var lo = from
        var hi = x.count
        while lo < hi {
            let mid = (lo + hi) / 2
            if x[mid] <= value { lo = mid + 1 } else { hi = mid }
        }
        return lo
    }

    /// Index of the entry of the ascending `table` nearest to `v` (the lower one on a tie).
    public static func nearest(_ v: Float, in table: [Float]) -> Int {
        let above = upperBound(table, v, from: 0)
        if above == 0 { return 0 }
        if above == table.count { return table.count - 1 }
        // table[above - 1] ≤ v < table[above]; equal entries below resolve to the first of them.
        var below = above - 1
        while below > 0 && table[below - 1] == table[below] { below -= 1 }
        return v - table[above - 1] <= table[above] - v ? below : above
    }
}
