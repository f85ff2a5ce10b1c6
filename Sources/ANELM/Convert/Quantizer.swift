import CANELMKernels

/// f32 rows encoded as a stored type: f32, f16, bf16 or a GGML block quantization.
///
/// Q8_0, Q4_0, Q4_1, Q5_0 and Q5_1 follow gguf-py's numpy reference (`gguf/quants.py`) operation for operation,
/// so their bytes are identical to it (tested against its output). The K-quants have no gguf-py quantizer; they
/// follow ggml's reference algorithm (`quantize_row_q4_K_ref` etc., what llama-quantize runs without an
/// importance matrix): a least-squares search of each sub-block's scale (and min), then 6-bit (Q6_K: 8-bit)
/// sub-block scales under one f16 super-block scale. Their error is measured against llama-quantize's
/// (tools/convert/kquant-error, BENCHMARKS.md).
public enum Quantizer {
    /// The types anelm can write.
    public static let writableTypes: [TensorType] = [.f32, .f16, .bf16, .q8_0, .q4_0, .q4_1, .q5_0, .q5_1, .q4_K, .q5_K, .q6_K]

    /// `values` (whole rows of `rowLength`) encoded as `type`. Non-finite values are refused: the reference
    /// quantizers' output for them is undefined, and a model holding them is broken.
    public static func encode(_ values: UnsafeBufferPointer<Float>, rowLength: Int, as type: TensorType, name: String) throws -> [UInt8] {
        guard rowLength > 0, values.count % rowLength == 0 else { throw ANELMError("tensor \(quoted(name)): \(values.count) values are not whole rows of \(rowLength)") }
        guard rowLength % type.blockSize == 0, let byteCount = type.byteCount(elements: values.count) else {
            throw ANELMError("tensor \(quoted(name)): row length \(rowLength) is not a multiple of the \(type) block size (\(type.blockSize))")
        }
        if let bad = values.firstIndex(where: { !$0.isFinite }) {
            throw ANELMError("tensor \(quoted(name)) holds a non-finite value (\(values[bad]) at element \(bad)); refusing to convert it")
        }
        var out = [UInt8](repeating: 0, count: byteCount)
        guard let src = values.baseAddress, !values.isEmpty else { return out }
        out.withUnsafeMutableBytes { raw in
            let dst = raw.baseAddress!.assumingMemoryBound(to: UInt8.self)
            let blocks = values.count / type.blockSize
            let encodeBlock: (UnsafePointer<Float>, UnsafeMutablePointer<UInt8>) -> Void
            switch type {
            case .f32:
                raw.copyMemory(from: UnsafeRawBufferPointer(values))
                return
            case .f16:
                let halves = raw.baseAddress!.assumingMemoryBound(to: UInt16.self)
                for i in 0..<values.count { halves[i] = anelm_f32_to_f16(src[i]).littleEndian }
                return
            case .bf16:
                let halves = raw.baseAddress!.assumingMemoryBound(to: UInt16.self)
                for i in 0..<values.count { halves[i] = bfloat16(src[i]).littleEndian }
                return
            case .q8_0: encodeBlock = q8_0
            case .q4_0: encodeBlock = q4_0
            case .q4_1: encodeBlock = q4_1
            case .q5_0: encodeBlock = q5_0
            case .q5_1: encodeBlock = q5_1
            case .q4_K: encodeBlock = { q45_K($0, $1, fifthBit: false) }
            case .q5_K: encodeBlock = { q45_K($0, $1, fifthBit: true) }
            case .q6_K: encodeBlock = q6_K
            }
            for b in 0..<blocks { encodeBlock(src + b * type.blockSize, dst + b * type.bytesPerBlock) }
        }
        return out
    }

    // MARK: Scalars

    /// f32 → bf16, rounding to nearest even (as gguf-py and ggml; non-finite values never get here).
    static func bfloat16(_ x: Float) -> UInt16 {
        let bits = x.bitPattern
        return UInt16(truncatingIfNeeded: (UInt64(bits) + UInt64(0x7FFF + ((bits >> 16) & 1))) >> 16)
    }

    static func storeHalf(_ x: Float, _ p: UnsafeMutablePointer<UInt8>) {
        let h = anelm_f32_to_f16(x)
        p[0] = UInt8(truncatingIfNeeded: h)
        p[1] = UInt8(truncatingIfNeeded: h >> 8)
    }

    static func loadHalf(_ p: UnsafePointer<UInt8>) -> Float { anelm_f16_to_f32(UInt16(p[0]) | UInt16(p[1]) << 8) }

    /// Index of the first element of largest magnitude (numpy's `abs(x).argmax()`).
    private static func firstLargestMagnitude(_ x: UnsafePointer<Float>, _ n: Int) -> Int {
        var best = 0
        for j in 1..<n where abs(x[j]) > abs(x[best]) { best = j }
        return best
    }

    private static func minMax(_ x: UnsafePointer<Float>, _ n: Int) -> (min: Float, max: Float) {
        var lo = x[0]
        var hi = x[0]
        for j in 1..<n {
            lo = min(lo, x[j])
            hi = max(hi, x[j])
        }
        return (lo, hi)
    }

    /// `trunc(v)` as an integer clamped to 0...top, as numpy's `trunc(...).astype(uint8).clip(0, top)` (v ≥ 0 here).
    /// An infinite product (a subnormal scale's inverse overflows) counts as 0, as the x86 conversion leaves it.
    private static func truncated(_ v: Float, top: Int) -> Int { min(top, max(0, boundedInt(v.rounded(.towardZero)))) }

    /// An integral float as Int without trapping: non-finite or huge values become 0.
    private static func boundedInt(_ v: Float) -> Int { abs(v) < 1e9 ? Int(v) : 0 }

    // MARK: 32-element blocks (gguf-py's reference)

    static func q8_0(_ x: UnsafePointer<Float>, _ out: UnsafeMutablePointer<UInt8>) {
        var amax: Float = 0
        for j in 0..<32 { amax = max(amax, abs(x[j])) }
        let d = amax / 127
        let id: Float = d == 0 ? 0 : 1 / d
        storeHalf(d, out)
        for j in 0..<32 { out[2 + j] = UInt8(truncatingIfNeeded: boundedInt((x[j] * id).rounded(.toNearestOrAwayFromZero))) }
    }

    static func q4_0(_ x: UnsafePointer<Float>, _ out: UnsafeMutablePointer<UInt8>) {
        let d = x[firstLargestMagnitude(x, 32)] / -8
        let id: Float = d == 0 ? 0 : 1 / d
        storeHalf(d, out)
        for j in 0..<16 {
            let lo = truncated(x[j] * id + 8.5, top: 15)
            let hi = truncated(x[j + 16] * id + 8.5, top: 15)
            out[2 + j] = UInt8(lo | hi << 4)
        }
    }

    static func q4_1(_ x: UnsafePointer<Float>, _ out: UnsafeMutablePointer<UInt8>) {
        let (lo, hi) = minMax(x, 32)
        let d = (hi - lo) / 15
        let id: Float = d == 0 ? 0 : 1 / d
        storeHalf(d, out)
        storeHalf(lo, out + 2)
        for j in 0..<16 {
            let a = truncated((x[j] - lo) * id + 0.5, top: 15)
            let b = truncated((x[j + 16] - lo) * id + 0.5, top: 15)
            out[4 + j] = UInt8(a | b << 4)
        }
    }

    /// Q5_0/Q5_1's bits: low nibbles of values j and j+16 share byte j; bit j of the 32-bit `qh` is value j's fifth bit.
    private static func packFiveBit(_ q: [Int], qh: UnsafeMutablePointer<UInt8>, qs: UnsafeMutablePointer<UInt8>) {
        var high: UInt32 = 0
        for j in 0..<32 { high |= UInt32(q[j] >> 4) << UInt32(j) }
        for b in 0..<4 { qh[b] = UInt8(truncatingIfNeeded: high >> UInt32(8 * b)) }
        for j in 0..<16 { qs[j] = UInt8((q[j] & 0x0F) | (q[j + 16] & 0x0F) << 4) }
    }

    static func q5_0(_ x: UnsafePointer<Float>, _ out: UnsafeMutablePointer<UInt8>) {
        let d = x[firstLargestMagnitude(x, 32)] / -16
        let id: Float = d == 0 ? 0 : 1 / d
        storeHalf(d, out)
        packFiveBit((0..<32).map { truncated(x[$0] * id + 16.5, top: 31) }, qh: out + 2, qs: out + 6)
    }

    static func q5_1(_ x: UnsafePointer<Float>, _ out: UnsafeMutablePointer<UInt8>) {
        let (lo, hi) = minMax(x, 32)
        let d = (hi - lo) / 31
        let id: Float = d == 0 ? 0 : 1 / d
        storeHalf(d, out)
        storeHalf(lo, out + 2)
        packFiveBit((0..<32).map { truncated((x[$0] - lo) * id + 0.5, top: 31) }, qh: out + 4, qs: out + 8)
    }

    // MARK: K-quants (256-element super-blocks, ggml's reference algorithm)

    /// Round to nearest, ties to even, for |v| < 2^22 (ggml's `nearest_int` trick: add 1.5·2^23, read the mantissa).
    static func nearestInt(_ v: Float) -> Int {
        let shifted = v + 12_582_912
        return Int(shifted.bitPattern & 0x007F_FFFF) - 0x0040_0000
    }

    /// Scale and min of one sub-block for levels 0...levels: start from the min–max fit, then try `steps` + 1
    /// stretched grids and keep the weighted least-squares fit of lowest weighted squared error. Returns
    /// (scale, -min) and writes the levels to `L`.
    static func fitScaleAndMin(
        _ x: UnsafePointer<Float>, count n: Int, levels: Int, weights w: [Float], into L: UnsafeMutablePointer<UInt8>, firstStretch: Float, stretchStep: Float,
        steps: Int
    ) -> (scale: Float, negatedMin: Float) {
        var lo = x[0]
        var hi = x[0]
        var sumW = w[0]
        var sumX = sumW * x[0]
        for i in 1..<n {
            if x[i] < lo { lo = x[i] }
            if x[i] > hi { hi = x[i] }
            sumW += w[i]
            sumX += w[i] * x[i]
        }
        if lo > 0 { lo = 0 }
        if hi == lo {
            for i in 0..<n { L[i] = 0 }
            return (0, -lo)
        }
        let nmax = Float(levels)
        var iscale = nmax / (hi - lo)
        var scale = 1 / iscale
        var bestError: Float = 0
        for i in 0..<n {
            let l = max(0, min(levels, nearestInt(iscale * (x[i] - lo))))
            L[i] = UInt8(l)
            let diff = scale * Float(l) + lo - x[i]
            bestError += w[i] * (diff * diff)
        }
        var trial = [UInt8](repeating: 0, count: n)
        for step in 0...steps {
            iscale = (firstStretch + stretchStep * Float(step) + nmax) / (hi - lo)
            var sumL: Float = 0
            var sumL2: Float = 0
            var sumXL: Float = 0
            for i in 0..<n {
                let l = max(0, min(levels, nearestInt(iscale * (x[i] - lo))))
                trial[i] = UInt8(l)
                let fl = Float(l)
                sumL += w[i] * fl
                sumL2 += w[i] * fl * fl
                sumXL += w[i] * fl * x[i]
            }
            let det = sumW * sumL2 - sumL * sumL
            guard det > 0 else { continue }
            var thisScale = (sumW * sumXL - sumX * sumL) / det
            var thisMin = (sumL2 * sumX - sumL * sumXL) / det
            if thisMin > 0 {
                thisMin = 0
                thisScale = sumXL / sumL2
            }
            var error: Float = 0
            for i in 0..<n {
                let diff = thisScale * Float(trial[i]) + thisMin - x[i]
                error += w[i] * (diff * diff)
            }
            if error < bestError {
                for i in 0..<n { L[i] = trial[i] }
                bestError = error
                scale = thisScale
                lo = thisMin
            }
        }
        return (scale, -lo)
    }

    /// Q4_K (levels 0–15) and Q5_K (0–31): 8 sub-blocks of 32, each with a 6-bit scale and min.
    /// Layout: d, dmin (f16), 12 bytes of packed scales/mins, [Q5_K: 32 bytes of fifth bits], 128 bytes of nibbles.
    static func q45_K(_ x: UnsafePointer<Float>, _ out: UnsafeMutablePointer<UInt8>, fifthBit: Bool) {
        let levels = fifthBit ? 31 : 15
        var L = [UInt8](repeating: 0, count: 256)
        var scales = [Float](repeating: 0, count: 8)
        var mins = [Float](repeating: 0, count: 8)
        var maxScale: Float = 0
        var maxMin: Float = 0
        for j in 0..<8 {
            let sub = x + 32 * j
            var sumX2: Float = 0
            for l in 0..<32 { sumX2 += sub[l] * sub[l] }
            let average = (sumX2 / 32).squareRoot()
            let weights = (0..<32).map { average + abs(sub[$0]) }
            let fit = L.withUnsafeMutableBufferPointer {
                fitScaleAndMin(
                    sub, count: 32, levels: levels, weights: weights, into: $0.baseAddress! + 32 * j, firstStretch: fifthBit ? -0.5 : -1, stretchStep: 0.1,
                    steps: fifthBit ? 15 : 20)
            }
            scales[j] = fit.scale
            mins[j] = fit.negatedMin
            if fit.scale > maxScale { maxScale = fit.scale }
            if fit.negatedMin > maxMin { maxMin = fit.negatedMin }
        }
        let invScale: Float = maxScale > 0 ? 63 / maxScale : 0
        let invMin: Float = maxMin > 0 ? 63 / maxMin : 0
        let packed = out + 4
        for i in 0..<12 { packed[i] = 0 }
        var quantizedScales = [Int](repeating: 0, count: 8)
        var quantizedMins = [Int](repeating: 0, count: 8)
        for j in 0..<8 {
            let ls = min(63, Int(UInt8(truncatingIfNeeded: nearestInt(invScale * scales[j]))))
            let lm = min(63, Int(UInt8(truncatingIfNeeded: nearestInt(invMin * mins[j]))))
            quantizedScales[j] = ls
            quantizedMins[j] = lm
            if j < 4 {
                packed[j] = UInt8(ls)
                packed[j + 4] = UInt8(lm)
            } else {
                packed[j + 4] = UInt8((ls & 0xF) | (lm & 0xF) << 4)
                packed[j - 4] |= UInt8((ls >> 4) << 6)
                packed[j] |= UInt8((lm >> 4) << 6)
            }
        }
        storeHalf(maxScale / 63, out)
        storeHalf(maxMin / 63, out + 2)
        let d = loadHalf(out)
        let dmin = loadHalf(out + 2)
        for j in 0..<8 {
            let scale = d * Float(quantizedScales[j])
            if scale == 0 { continue }
            let offset = dmin * Float(quantizedMins[j])
            for i in 0..<32 { L[32 * j + i] = UInt8(max(0, min(levels, nearestInt((x[32 * j + i] + offset) / scale)))) }
        }
        let qs = out + (fifthBit ? 48 : 16)
        if fifthBit {
            let qh = out + 16
            for i in 0..<32 { qh[i] = 0 }
            for (pair, base) in stride(from: 0, to: 256, by: 64).enumerated() {
                for j in 0..<32 {
                    let a = L[base + j]
                    let b = L[base + j + 32]
                    if a > 15 { qh[j] |= 1 << UInt8(2 * pair) }
                    if b > 15 { qh[j] |= 2 << UInt8(2 * pair) }
                    qs[32 * pair + j] = (a & 0xF) | (b & 0xF) << 4
                }
            }
        } else {
            for (pair, base) in stride(from: 0, to: 256, by: 64).enumerated() {
                for j in 0..<32 { qs[32 * pair + j] = L[base + j] | L[base + j + 32] << 4 }
            }
        }
    }

    /// Signed levels -nmax..<nmax for one sub-block, the scale chosen among 19 stretched grids by weighted
    /// (x²) least squares. Returns the scale; writes level + nmax to `L`.
    static func fitSignedScale(_ x: UnsafePointer<Float>, count n: Int, nmax: Int, into L: UnsafeMutablePointer<Int8>) -> Float {
        var largest: Float = 0
        var amax: Float = 0
        for i in 0..<n where abs(x[i]) > amax {
            amax = abs(x[i])
            largest = x[i]
        }
        if amax < 1e-15 {
            for i in 0..<n { L[i] = 0 }
            return 0
        }
        let fmax = Float(nmax)
        func level(_ v: Float) -> Int { max(-nmax, min(nmax - 1, nearestInt(v))) }
        var iscale = -fmax / largest
        var sumLX: Float = 0
        var sumL2: Float = 0
        for i in 0..<n {
            let l = level(iscale * x[i])
            L[i] = Int8(l + nmax)
            let w = x[i] * x[i]
            let fl = Float(l)
            sumLX += w * x[i] * fl
            sumL2 += w * fl * fl
        }
        var scale: Float = sumL2 != 0 ? sumLX / sumL2 : 0
        var best = scale * sumLX
        for stretch in -9...9 where stretch != 0 {
            iscale = -(fmax + 0.1 * Float(stretch)) / largest
            sumLX = 0
            sumL2 = 0
            for i in 0..<n {
                let fl = Float(level(iscale * x[i]))
                let w = x[i] * x[i]
                sumLX += w * x[i] * fl
                sumL2 += w * fl * fl
            }
            if sumL2 > 0 && sumLX * sumLX > best * sumL2 {
                for i in 0..<n { L[i] = Int8(level(iscale * x[i]) + nmax) }
                scale = sumLX / sumL2
                best = scale * sumLX
            }
        }
        return scale
    }

    /// Q6_K: 16 sub-blocks of 16 with int8 scales under one f16 scale; 6-bit levels split into 4 low bits (ql)
    /// and 2 high bits (qh). Layout: ql[128], qh[64], scales[16], d (f16).
    static func q6_K(_ x: UnsafePointer<Float>, _ out: UnsafeMutablePointer<UInt8>) {
        var L = [Int8](repeating: 0, count: 256)
        var scales = [Float](repeating: 0, count: 16)
        var maxScale: Float = 0
        var maxAbsScale: Float = 0
        L.withUnsafeMutableBufferPointer { levels in
            for b in 0..<16 {
                let scale = fitSignedScale(x + 16 * b, count: 16, nmax: 32, into: levels.baseAddress! + 16 * b)
                scales[b] = scale
                if abs(scale) > maxAbsScale {
                    maxAbsScale = abs(scale)
                    maxScale = scale
                }
            }
        }
        for i in 0..<210 { out[i] = 0 }
        if maxAbsScale < 1e-15 { return }
        let iscale = -128 / maxScale
        storeHalf(1 / iscale, out + 208)
        let d = loadHalf(out + 208)
        let scaleBytes = out + 192
        for b in 0..<16 {
            let s = min(127, nearestInt(iscale * scales[b]))
            scaleBytes[b] = UInt8(bitPattern: Int8(truncatingIfNeeded: s))
            let sub = d * Float(Int8(truncatingIfNeeded: s))
            if sub == 0 { continue }
            for i in 0..<16 { L[16 * b + i] = Int8(max(-32, min(31, nearestInt(x[16 * b + i] / sub))) + 32) }
        }
        let ql = out
        let qh = out + 128
        for (half, base) in stride(from: 0, to: 256, by: 128).enumerated() {
            for l in 0..<32 {
                let q1 = UInt8(L[base + l]), q2 = UInt8(L[base + l + 32]), q3 = UInt8(L[base + l + 64]), q4 = UInt8(L[base + l + 96])
                ql[64 * half + l] = (q1 & 0xF) | (q3 & 0xF) << 4
                ql[64 * half + l + 32] = (q2 & 0xF) | (q4 & 0xF) << 4
                qh[32 * half + l] = (q1 >> 4) | (q2 >> 4) << 2 | (q3 >> 4) << 4 | (q4 >> 4) << 6
            }
        }
    }
}
