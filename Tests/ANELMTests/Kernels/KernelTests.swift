import ANELM
import CANELMKernels
import XCTest

/// Every optimized kernel against a plain reference, on random and awkward shapes
/// (sizes not a multiple of the block or SIMD width, one row, one column).
final class KernelTests: XCTestCase {
    var rng = SeededGenerator(seed: 7)

    func random(_ n: Int, scale: Float = 1) -> [Float] {
        (0..<n).map { _ in (Float(rng.next() % 20001) / 10000 - 1) * scale }
    }

    /// GGML blocks of `type` with random contents (scales kept finite).
    func randomBlocks(_ type: TensorType, rows: Int, cols: Int) -> [UInt8] {
        let blocks = rows * cols / type.blockSize
        var bytes: [UInt8] = []
        for _ in 0..<blocks {
            switch type {
            case .f32: bytes += floatBytes(random(1))
            case .f16, .bf16:
                let v = random(1)[0]
                let bits: UInt16 = type == .f16 ? anelm_f32_to_f16(v) : UInt16(v.bitPattern >> 16)
                bytes += [UInt8(bits & 0xff), UInt8(bits >> 8)]
            case .q8_0, .q4_0, .q4_1, .q5_0, .q5_1, .q4_K, .q5_K:
                let headers = [.q4_1, .q5_1, .q4_K, .q5_K].contains(type) ? 2 : 1  // scale (and min) first
                for _ in 0..<headers {
                    let h = anelm_f32_to_f16(random(1, scale: 0.05)[0])
                    bytes += [UInt8(h & 0xff), UInt8(h >> 8)]
                }
                bytes += (0..<(type.bytesPerBlock - 2 * headers)).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
            case .q6_K:  // scale last
                bytes += (0..<(type.bytesPerBlock - 2)).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
                let h = anelm_f32_to_f16(random(1, scale: 0.05)[0])
                bytes += [UInt8(h & 0xff), UInt8(h >> 8)]
            }
        }
        return bytes
    }

    func matrix(_ type: TensorType, rows: Int, cols: Int) throws -> (WeightMatrix, [Float], Data) {
        let bytes = randomBlocks(type, rows: rows, cols: cols)
        let tensor = StableBytes(bytes).tensor(type, shape: [rows, cols])
        let w = try WeightMatrix(tensor)
        let f = try WeightMatrix.dequantized(tensor)
        let dense = Array(UnsafeBufferPointer(start: f.data.assumingMemoryBound(to: Float.self), count: rows * cols))
        return (w, dense, Data(bytes))
    }

    func testMatmulEveryTypeAgainstDoubleReference() throws {
        let pool = ThreadPool(threads: 2)
        // (45, 1024): the eight-token kernels' weight chunks (21 rows of 1024 columns) end mid-matrix, four
        // rows at a time and then one; (2, 22528): rows too wide for their scratch, so the four-token path.
        let shapes = [(1, 1), (3, 7), (1, 32), (7, 64), (33, 96), (130, 160), (1, 576), (3, 1024), (45, 1024), (2, 22528)]
        for type in TensorType.allCases {
            for (rows, cols) in shapes where cols % type.blockSize == 0 {  // K-quants: QuantTests covers more shapes
                // 6: one 4-token group and a remainder; 8 and 19: one and two 8-token groups, 19 with a remainder of 3.
                for tokens in [1, 3, 6, 8, 19] {
                    let (w, dense, _) = try matrix(type, rows: rows, cols: cols)
                    let x = random(tokens * cols)
                    var y = [Float](repeating: .nan, count: tokens * rows)
                    x.withUnsafeBufferPointer { xp in
                        y.withUnsafeMutableBufferPointer { Kernels.matmul(w, xp.baseAddress!, $0.baseAddress!, tokens: tokens, pool: pool) }
                    }
                    // Quantized weights multiply 16-bit activations: the error is bounded by the
                    // activation rounding (≤ half a step of 1/32767 of the block max, here ≤ 1).
                    for t in 0..<tokens {
                        for r in 0..<rows {
                            var exact = 0.0
                            var magnitude = 0.0
                            for c in 0..<cols {
                                exact += Double(dense[r * cols + c]) * Double(x[t * cols + c])
                                magnitude += abs(Double(dense[r * cols + c]))
                            }
                            let tolerance = type.isQuantized ? magnitude / 32767 * 0.51 + 1e-4 : 1e-4 * max(1, magnitude)
                            XCTAssertEqual(Double(y[t * rows + r]), exact, accuracy: tolerance, "\(type) \(rows)x\(cols) t\(t) r\(r)")
                        }
                    }
                }
            }
        }
    }

    func testEveryISAMatchesPortable() throws {
        guard Kernels.availableISAs.count > 1 else { throw XCTSkip("only the portable kernels run here") }
        let pool = ThreadPool(threads: 1)
        for type in TensorType.allCases {
            // Float types also get widths that are not a multiple of the SIMD width (1, 7, 23 columns).
            for (rows, cols) in [(5, 32), (9, 288), (2, 1000 - 1000 % type.blockSize), (1, 1), (3, 7), (4, 23)] where cols % type.blockSize == 0 {
                let (w, _, _) = try matrix(type, rows: rows, cols: cols)
                for tokens in [5, 19] {  // 19: two 8-token groups, one 4-token group, 3 more
                    let x = random(tokens * cols)
                    func run() -> [Float] {
                        var y = [Float](repeating: 0, count: tokens * rows)
                        x.withUnsafeBufferPointer { xp in
                            y.withUnsafeMutableBufferPointer { Kernels.matmul(w, xp.baseAddress!, $0.baseAddress!, tokens: tokens, pool: pool) }
                        }
                        return y
                    }
                    Kernels.limitISA(.portable)
                    let plain = run()
                    for isa in Kernels.availableISAs.dropFirst() {
                        Kernels.limitISA(isa)
                        let fast = run()
                        for i in fast.indices {
                            XCTAssertEqual(fast[i], plain[i], accuracy: 1e-4 * max(1, abs(plain[i])), "\(type) \(rows)x\(cols) tokens \(tokens) \(isa.name)")
                        }
                    }
                    Kernels.limitISA(nil)
                }
            }
        }
    }

    /// The levels are this architecture's (x86_64: avx2, avxvnni, avx512vnni; arm64: neon), portable first;
    /// a cap at a level this CPU runs gives that level (so each VNNI file can be chosen where the CPU has it),
    /// a cap at one it lacks the highest it runs below; asking does not move the cap.
    func testAvailableISAsAreThisArchitecturesLevels() throws {
        defer { Kernels.limitISA(nil) }
        let levels = Kernels.availableISAs
        XCTAssertEqual(levels.first, .portable)
        #if arch(arm64)
            XCTAssertEqual(levels, [.portable, .neon])
        #elseif arch(x86_64)
            XCTAssertFalse(levels.contains(.neon))
        #endif
        if ProcessInfo.processInfo.environment["ANELM_ISA"] == nil { XCTAssertEqual(Kernels.isa, levels.last, "the best level by default") }
        for level in Kernels.ISA.allCases {
            Kernels.limitISA(level)
            let below = levels.last { $0.rawValue <= level.rawValue }
            XCTAssertEqual(Kernels.isa, below, "cap \(level.name) gives \(Kernels.isa.name)")
        }
        Kernels.limitISA(.portable)
        XCTAssertEqual(Kernels.availableISAs, levels)
        XCTAssertEqual(Kernels.isa, .portable)
    }

    /// The VNNI levels are there exactly when Linux reports the CPU features their files are compiled for.
    func testVNNILevelsFollowTheCPUFlags() throws {
        #if os(Linux) && arch(x86_64)
            let cpuinfo = try String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8)
            guard let line = cpuinfo.split(separator: "\n").first(where: { $0.hasPrefix("flags") }) else { throw XCTSkip("no flags in /proc/cpuinfo") }
            let flags = Set(line.split(separator: " ").map(String.init))
            let avx2 = flags.isSuperset(of: ["avx2", "fma", "f16c"])
            XCTAssertEqual(Kernels.availableISAs.contains(.avxvnni), avx2 && flags.contains("avx_vnni"))
            XCTAssertEqual(Kernels.availableISAs.contains(.avx512vnni), avx2 && flags.isSuperset(of: ["avx512f", "avx512vl", "avx512bw", "avx512_vnni"]))
            print("kernel levels on this CPU: \(Kernels.availableISAs.map(\.name).joined(separator: ", "))")
        #else
            throw XCTSkip("reads Linux's /proc/cpuinfo on x86_64")
        #endif
    }

    /// ANELM_ISA's names are the ISA cases' names; anything else names no level.
    func testISAEnvironmentNames() {
        for level in Kernels.ISA.allCases {
            let name = anelm_isa_name(level.rawValue).map { String(cString: $0) }
            XCTAssertEqual(name, "\(level)")
            XCTAssertEqual(anelm_isa_named("\(level)"), level.rawValue)
        }
        for name in ["", "AVX2", "avx2+vnni", "avx512", "sse"] { XCTAssertEqual(anelm_isa_named(name), -1, name) }
        XCTAssertNil(anelm_isa_name(Int32(Kernels.ISA.allCases.count)))
    }

    func testQuantizeQ16MatchesPortableBitForBit() throws {
        for n in [32, 96, 1024] {
            var x = random(n, scale: 3)
            x[0] = 3
            x[1] = -3  // values at ±max hit the ends of the int16 range exactly
            var a = [anelm_block_q16](repeating: anelm_block_q16(), count: n / 32)
            var b = a
            anelm_quantize_q16(x, &a, n)
            Kernels.limitISA(.portable)
            anelm_quantize_q16(x, &b, n)
            Kernels.limitISA(nil)
            for i in a.indices {
                XCTAssertEqual(a[i].d, b[i].d)
                XCTAssertEqual(a[i].s, b[i].s)
                XCTAssertEqual(withUnsafeBytes(of: a[i].q) { Array($0) }, withUnsafeBytes(of: b[i].q) { Array($0) })
                // Each value comes back within half a step.
                let q = withUnsafeBytes(of: a[i].q) { Array($0.bindMemory(to: Int16.self)) }
                for j in 0..<32 { XCTAssertEqual(Float(q[j]) * a[i].d, x[i * 32 + j], accuracy: a[i].d * 0.5001) }
            }
            XCTAssertEqual(a[0].q.0, 32767)
            XCTAssertEqual(a[0].q.1, -32767)
        }
        // Blocks no model should produce still quantize as the portable code does: all NaN, ±inf among
        // finite values, a largest value that is subnormal.
        var odd = [Float](repeating: .nan, count: 32)
        odd += [.infinity, -.infinity, 1, -2] + [Float](repeating: 0.5, count: 28)
        odd += [1e-40, 0, -1e-41, .nan] + [Float](repeating: 1e-42, count: 28)
        var fast = [anelm_block_q16](repeating: anelm_block_q16(), count: 3)
        var plain = fast
        anelm_quantize_q16(odd, &fast, odd.count)
        Kernels.limitISA(.portable)
        anelm_quantize_q16(odd, &plain, odd.count)
        Kernels.limitISA(nil)
        for i in fast.indices {
            XCTAssertEqual(fast[i].d.bitPattern, plain[i].d.bitPattern, "block \(i)")
            XCTAssertEqual(fast[i].s.bitPattern, plain[i].s.bitPattern, "block \(i)")
            XCTAssertEqual(withUnsafeBytes(of: fast[i].q) { Array($0) }, withUnsafeBytes(of: plain[i].q) { Array($0) }, "block \(i)")
        }

        var zero = [anelm_block_q16](repeating: anelm_block_q16(), count: 1)
        anelm_quantize_q16([Float](repeating: 0, count: 32), &zero, 32)
        XCTAssertEqual(zero[0].d, 0)
        XCTAssertEqual(zero[0].s, 0)
    }

    func testVectorKernels() {
        defer { Kernels.limitISA(nil) }
        for isa in Kernels.availableISAs {
            Kernels.limitISA(isa)
            for n in [1, 7, 8, 15, 16, 17, 64, 577] {
                let a = random(n)
                let b = random(n)
                let dot = zip(a, b).reduce(0.0) { $0 + Double($1.0) * Double($1.1) }
                XCTAssertEqual(
                    Double(a.withUnsafeBufferPointer { ap in b.withUnsafeBufferPointer { Kernels.dot(ap.baseAddress!, $0.baseAddress!, count: n) } }), dot,
                    accuracy: 1e-5)

                var y = b
                a.withUnsafeBufferPointer { ap in y.withUnsafeMutableBufferPointer { Kernels.axpy(0.5, ap.baseAddress!, $0.baseAddress!, count: n) } }
                for i in 0..<n { XCTAssertEqual(y[i], b[i] + 0.5 * a[i], accuracy: 1e-6) }

                var s = a.map { $0 * 30 }
                let m = s.max()!
                let e = s.map { exp(Double($0 - m)) }
                let total = e.reduce(0, +)
                s.withUnsafeMutableBufferPointer { Kernels.softmax($0.baseAddress!, count: n) }
                for i in 0..<n { XCTAssertEqual(Double(s[i]), e[i] / total, accuracy: 1e-6) }

                let w = random(n)
                var out = [Float](repeating: 0, count: n)
                a.withUnsafeBufferPointer { ap in
                    w.withUnsafeBufferPointer { wp in
                        out.withUnsafeMutableBufferPointer {
                            Kernels.rmsNorm(ap.baseAddress!, weight: wp.baseAddress!, eps: 1e-5, count: n, into: $0.baseAddress!)
                        }
                    }
                }
                let rms = (a.reduce(0.0) { $0 + Double($1) * Double($1) } / Double(n) + 1e-5).squareRoot()
                for i in 0..<n { XCTAssertEqual(Double(out[i]), Double(a[i]) / rms * Double(w[i]), accuracy: 1e-5) }

                var g = a
                b.withUnsafeBufferPointer { bp in g.withUnsafeMutableBufferPointer { Kernels.siluMul(gate: $0.baseAddress!, up: bp.baseAddress!, count: n) } }
                for i in 0..<n { XCTAssertEqual(Double(g[i]), Double(a[i]) / (1 + exp(-Double(a[i]))) * Double(b[i]), accuracy: 1e-6) }

                // Activations over a wide range (exp's clamping, both tails). The references are exact in double;
                // GELU's tanh form as x·sigmoid(2u), which is 0.5·x·(1 + tanh(u)) without its cancellation for x ≪ 0.
                // In float, the sigmoid's argument z carries a relative rounding of ~1e-7, which moves exp(-z) by
                // |z|·1e-7 relative: the tolerance grows with |z| (and allows the ~1e-37 a clamped exp leaves of 0).
                let wide = random(n, scale: 30)
                for (name, argument) in [
                    ("silu", { (x: Double) in x }),
                    ("gelu_tanh", { (x: Double) in 2 * 0.7978845608028654 * (x + 0.044715 * x * x * x) }),
                ] {
                    var out = wide
                    b.withUnsafeBufferPointer { bp in
                        out.withUnsafeMutableBufferPointer {
                            name == "silu"
                                ? Kernels.siluMul(gate: $0.baseAddress!, up: bp.baseAddress!, count: n)
                                : Kernels.geluTanhMul(gate: $0.baseAddress!, up: bp.baseAddress!, count: n)
                        }
                    }
                    for i in 0..<n {
                        let x = Double(wide[i])
                        let z = argument(x)
                        let expected = x / (1 + exp(-z)) * Double(b[i])
                        XCTAssertEqual(Double(out[i]), expected, accuracy: 3e-7 * (abs(z) + 2) * abs(expected) + 1e-36, "\(name)(\(wide[i])) \(isa.name)")
                    }
                }
            }
        }
    }

    /// The grouped attention kernel against a double-precision reference, with f32 and f16 caches,
    /// soft-capped or not, on head sizes and position counts off the SIMD width, at every ISA level.
    func testAttentionAgainstDoubleReference() {
        defer { Kernels.limitISA(nil) }
        for isa in Kernels.availableISAs {
            Kernels.limitISA(isa)
            for (group, headDim, count, stride) in [(1, 16, 1, 16), (3, 64, 33, 192), (4, 24, 7, 48), (2, 256, 5, 256), (7, 8, 64, 56)] {
                for kvType in [TensorType.f32, .f16] {
                    for softcap: Float in [0, 3] {
                        let q = random(group * headDim, scale: 2)
                        var keys = random(count * stride, scale: 2)
                        var values = random(count * stride)
                        if kvType == .f16 {  // the reference sees the values the f16 cache holds
                            keys = keys.map { anelm_f16_to_f32(anelm_f32_to_f16($0)) }
                            values = values.map { anelm_f16_to_f32(anelm_f32_to_f16($0)) }
                        }
                        let stored: [UInt8] =
                            kvType == .f16
                            ? (keys + values).flatMap { v -> [UInt8] in
                                let h = anelm_f32_to_f16(v)
                                return [UInt8(h & 0xff), UInt8(h >> 8)]
                            }
                            : floatBytes(keys + values)
                        let scale = 1 / Float(headDim).squareRoot()
                        var out = [Float](repeating: .nan, count: group * headDim)
                        var scratch = [Float](repeating: 0, count: group * count + headDim)
                        var lse = [Float](repeating: .nan, count: group)
                        stored.withUnsafeBytes { kv in
                            let half = kv.count / 2
                            anelm_attention(
                                q, group, headDim, kv.baseAddress, kv.baseAddress! + half, Int32(kvType.rawValue), stride, count, scale, softcap, &scratch,
                                &out, &lse)
                        }
                        for g in 0..<group {
                            var s = (0..<count).map { j -> Double in
                                var d = 0.0
                                for i in 0..<headDim { d += Double(q[g * headDim + i]) * Double(keys[j * stride + i]) }
                                d *= Double(scale)
                                return softcap > 0 ? tanh(d / Double(softcap)) * Double(softcap) : d
                            }
                            let m = s.max()!
                            s = s.map { exp($0 - m) }
                            let total = s.reduce(0, +)
                            XCTAssertEqual(
                                Double(lse[g]), m + log(total), accuracy: 1e-5 * max(1, abs(m)), "log-sum-exp, group \(group) count \(count) \(isa.name)")
                            for i in 0..<headDim {
                                let expected = (0..<count).reduce(0.0) { $0 + s[$1] / total * Double(values[$1 * stride + i]) }
                                XCTAssertEqual(
                                    Double(out[g * headDim + i]), expected, accuracy: 1e-5,
                                    "group \(group) dim \(headDim) count \(count) \(kvType) cap \(softcap) \(isa.name)")
                            }
                        }
                    }
                }
            }
        }
    }

    func testHalfConversionsRoundTrip() {
        for bits in stride(from: 0, through: 0xffff, by: 1) where (bits & 0x7c00) != 0x7c00 {
            let f = anelm_f16_to_f32(UInt16(bits))
            XCTAssertEqual(anelm_f32_to_f16(f), UInt16(bits))
        }
        XCTAssertEqual(anelm_f32_to_f16(65520), 0x7c00)  // rounds to infinity
        XCTAssertEqual(anelm_f16_to_f32(0x3c00), 1)
        var out = [Float](repeating: 0, count: 19)
        let halves = (0..<19).map { anelm_f32_to_f16(Float($0) * 0.25 - 2) }
        anelm_convert_f16_to_f32(halves, &out, 19)
        XCTAssertEqual(out, (0..<19).map { Float($0) * 0.25 - 2 })

        // The vectorized f32 → f16 conversion (the KV cache's) rounds as the portable one, bit for bit:
        // ties to even, subnormals, overflow to infinity.
        var values: [Float] = [
            0, -0.0, 1, 65504, 65519, 65520, 1e-8, 6e-5, 5.9604645e-8, 2.9802322e-8, 8.940697e-8, -.infinity, .infinity, 1.0009765625, 1.00048828125,
        ]
        values += (0..<4000).map { _ in
            Float(sign: rng.next() % 2 == 0 ? .plus : .minus, exponent: Int(rng.next() % 40) - 28, significand: 1 + Float(rng.next() % 8_388_608) / 8_388_608)
        }
        var fast = [UInt16](repeating: 0, count: values.count)
        var plain = fast
        anelm_convert_f32_to_f16(values, &fast, values.count)
        Kernels.limitISA(.portable)
        anelm_convert_f32_to_f16(values, &plain, values.count)
        Kernels.limitISA(nil)
        XCTAssertEqual(fast, plain)
        XCTAssertEqual(plain, values.map(anelm_f32_to_f16))
    }

    func testThreadPoolRunsEveryIndexOnce() {
        let pool = ThreadPool(threads: 3)
        for count in [1, 2, 5, 1000] {
            var hits = [Int](repeating: 0, count: count)
            hits.withUnsafeMutableBufferPointer { h in
                let base = h.baseAddress!
                pool.parallelFor(count) { base[$0] += 1 }
            }
            XCTAssertEqual(hits, [Int](repeating: 1, count: count))
        }
    }
}
