import ANELM
import CANELMKernels
import XCTest

/// Q5_0, Q5_1, Q4_K, Q5_K, Q6_K: dequantization bit for bit against gguf-py (committed fixtures
/// from tools/reference/quant_fixtures.py), and matmul against a double-precision reference.
final class QuantTests: XCTestCase {
    static let newTypes: [TensorType] = [.q5_0, .q5_1, .q4_K, .q5_K, .q6_K]
    var rng = SeededGenerator(seed: 11)

    func fixture(_ name: String) throws -> Data {
        let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("Fixtures/quants/\(name)")
        return try Data(contentsOf: url)
    }

    func dequantize(_ type: TensorType, _ bytes: Data, count: Int) throws -> [Float] {
        var out = [Float](repeating: .nan, count: count)
        let ok = bytes.withUnsafeBytes { raw in
            out.withUnsafeMutableBufferPointer { anelm_dequantize(Int32(type.rawValue), raw.baseAddress!, $0.baseAddress!, count) }
        }
        XCTAssertEqual(ok, 1, "\(type)")
        return out
    }

    func testBlockLayouts() {
        let expected: [TensorType: (Int, Int)] = [.q5_0: (32, 22), .q5_1: (32, 24), .q4_K: (256, 144), .q5_K: (256, 176), .q6_K: (256, 210)]
        for type in Self.newTypes {
            XCTAssertEqual(type.blockSize, expected[type]?.0, "\(type)")
            XCTAssertEqual(type.bytesPerBlock, expected[type]?.1, "\(type)")
            XCTAssertTrue(type.isQuantized)
            XCTAssertEqual(TensorType.ggmlName(of: type.rawValue), type.description)
        }
        XCTAssertEqual(TensorType.q4_K.byteCount(elements: 1024), 4 * 144)
        XCTAssertNil(TensorType.q4_K.byteCount(elements: 640))
    }

    func testDequantizeMatchesGGUFPyBitForBit() throws {
        for type in Self.newTypes {
            let blocks = try fixture("\(type).blocks")
            let values = try fixture("\(type).f32")
            XCTAssertEqual(blocks.count % type.bytesPerBlock, 0)
            let count = blocks.count / type.bytesPerBlock * type.blockSize
            XCTAssertEqual(values.count, count * 4, "\(type)")
            let expected = values.withUnsafeBytes { Array($0.bindMemory(to: UInt32.self)) }.map { UInt32(littleEndian: $0) }
            let got = try dequantize(type, blocks, count: count).map(\.bitPattern)
            var mismatches = 0
            for i in 0..<count where got[i] != expected[i] {
                if mismatches < 5 {
                    XCTFail("\(type) value \(i) (block \(i / type.blockSize)): \(Float(bitPattern: got[i])) != \(Float(bitPattern: expected[i]))")
                }
                mismatches += 1
            }
            XCTAssertEqual(mismatches, 0, "\(type)")
            // The fixtures hold the awkward blocks they promise: an all-zero block and a ±65504 scale.
            XCTAssertTrue(got.prefix(type.blockSize).allSatisfy { Float(bitPattern: $0) == 0 })  // ±0: gguf-py keeps the sign
            XCTAssertTrue(got.contains { abs(Float(bitPattern: $0)) >= 65504 })
        }
    }

    /// GGML blocks of `type` with random bytes and small finite f16 scales.
    func randomBlocks(_ type: TensorType, count: Int) -> [UInt8] {
        var bytes: [UInt8] = []
        for _ in 0..<count {
            var block = (0..<type.bytesPerBlock).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
            let halves = type == .q6_K ? [208] : [.q4_1, .q5_1, .q4_K, .q5_K].contains(type) ? [0, 2] : [0]
            for offset in halves {
                let h = anelm_f32_to_f16(Float(Int(rng.next() % 20001) - 10000) / 10000 * 0.05)
                block[offset] = UInt8(h & 0xff)
                block[offset + 1] = UInt8(h >> 8)
            }
            bytes += block
        }
        return bytes
    }

    func matrix(_ type: TensorType, rows: Int, cols: Int) throws -> (WeightMatrix, [Float]) {
        let tensor = StableBytes(randomBlocks(type, count: rows * cols / type.blockSize)).tensor(type, shape: [rows, cols])
        let w = try WeightMatrix(tensor)
        let f = try WeightMatrix.dequantized(tensor)
        return (w, Array(UnsafeBufferPointer(start: f.data.assumingMemoryBound(to: Float.self), count: rows * cols)))
    }

    func random(_ n: Int) -> [Float] { (0..<n).map { _ in Float(Int(rng.next() % 20001) - 10000) / 10000 } }

    func matmul(_ w: WeightMatrix, _ x: [Float], tokens: Int, pool: ThreadPool) -> [Float] {
        var y = [Float](repeating: .nan, count: tokens * w.rows)
        x.withUnsafeBufferPointer { xp in y.withUnsafeMutableBufferPointer { Kernels.matmul(w, xp.baseAddress!, $0.baseAddress!, tokens: tokens, pool: pool) } }
        return y
    }

    func testMatmulAgainstDoubleReference() throws {
        let pool = ThreadPool(threads: 2)
        // 1 row; rows not a multiple of the task split (16 KB of weights per task); several super-blocks.
        let shapes = [(1, 256), (7, 512), (1, 1024), (131, 768), (257, 256), (3, 2048)]
        for type in Self.newTypes {
            for (rows, cols) in shapes + [(1, 32), (5, 96), (33, 640)] where cols % type.blockSize == 0 {
                let (w, dense) = try matrix(type, rows: rows, cols: cols)
                for tokens in [1, 3, 6, 8, 19] {  // 6: a 4-token group and a remainder; 19: two 8-token groups and 3
                    let x = random(tokens * cols)
                    let y = matmul(w, x, tokens: tokens, pool: pool)
                    for t in 0..<tokens {
                        for r in 0..<rows {
                            var exact = 0.0
                            var magnitude = 0.0
                            for c in 0..<cols {
                                exact += Double(dense[r * cols + c]) * Double(x[t * cols + c])
                                magnitude += abs(Double(dense[r * cols + c]))
                            }
                            // 16-bit activations: each is within half a step of 1/32767 of its block's max (≤ 1).
                            XCTAssertEqual(Double(y[t * rows + r]), exact, accuracy: magnitude / 32767 * 0.51 + 1e-4, "\(type) \(rows)x\(cols) t\(t) r\(r)")
                        }
                    }
                }
            }
        }
    }

    func testEveryISAMatchesPortable() throws {
        guard Kernels.availableISAs.count > 1 else { throw XCTSkip("only the portable kernels run here") }
        let pool = ThreadPool(threads: 2)
        for type in Self.newTypes {
            for (rows, cols) in [(1, 256), (9, 768), (2, 2048), (37, 512)] {
                let (w, _) = try matrix(type, rows: rows, cols: cols)
                for tokens in [1, 3, 6, 19] {
                    let x = random(tokens * cols)
                    Kernels.limitISA(.portable)
                    let plain = matmul(w, x, tokens: tokens, pool: pool)
                    for isa in Kernels.availableISAs.dropFirst() {
                        Kernels.limitISA(isa)
                        let fast = matmul(w, x, tokens: tokens, pool: pool)
                        for i in fast.indices {
                            XCTAssertEqual(fast[i], plain[i], accuracy: 1e-4 * max(1, abs(plain[i])), "\(type) \(rows)x\(cols) tokens \(tokens) \(isa.name)")
                        }
                    }
                    Kernels.limitISA(nil)
                }
            }
        }
    }

    func testRowLengthNotAWholeSuperBlockIsAClearError() {
        let tensor = StableBytes([UInt8](repeating: 0, count: 144 * 5)).tensor(.q4_K, shape: [2, 640])
        XCTAssertThrowsError(try WeightMatrix(tensor)) { XCTAssertTrue("\($0)".contains("256"), "\($0)") }
    }

    /// Every Q5_0/Q4_K/Q6_K tensor of the real Gemma 3 270M Q4_K_M file dequantizes to gguf-py's values.
    func testGemmaGGUFTensorsMatchGGUFPy() throws {
        guard let path = gemmaModelPath() else { throw XCTSkip("Gemma 3 270M not installed (scripts/fetch-gemma3)") }
        struct Entry: Decodable {
            let name: String
            let type: String
            let shape: [Int]
            let checksum: String
            let first: [UInt32]?
            let last: [UInt32]?
        }
        struct Fixture: Decodable { let tensors: [Entry] }
        let fixture = try JSONDecoder().decode(Fixture.self, from: try fixture("gemma-3-270m-q4_k_m.json"))
        let file = try GGUFFile(path: path)
        let inFile = file.tensorInfos.filter { info in Self.newTypes.contains { $0.rawValue == info.ggmlType } }.map(\.name)
        XCTAssertEqual(Set(inFile), Set(fixture.tensors.map(\.name)), "every tensor of the new types is covered")
        var sampled = 0
        for entry in fixture.tensors {
            let tensor = try XCTUnwrap(try file.tensor(named: entry.name))
            XCTAssertEqual(tensor.type.description, entry.type)
            XCTAssertEqual(tensor.shape, entry.shape)
            let m = try WeightMatrix.dequantized(tensor)
            let values = UnsafeBufferPointer(start: m.data.assumingMemoryBound(to: UInt32.self), count: m.rows * m.cols)
            var sum: UInt64 = 0
            for (i, bits) in values.enumerated() { sum = sum &+ UInt64(bits) &* (UInt64(i) &* 2 &+ 1) }
            XCTAssertEqual(String(sum), entry.checksum, entry.name)
            if let first = entry.first, let last = entry.last {
                XCTAssertEqual(Array(values.prefix(64)), first, entry.name)
                XCTAssertEqual(Array(values.suffix(64)), last, entry.name)
                sampled += 1
            }
        }
        XCTAssertEqual(sampled, 6)
    }

    // MARK: precision ggml: llama.cpp's activation blocks

    func ggmlBlocks(_ kind: Int32, _ x: [Float]) -> [anelm_block_q16] {
        var out = [anelm_block_q16](repeating: anelm_block_q16(), count: x.count / 32)
        anelm_quantize_ggml(kind, x, &out, x.count)
        return out
    }

    func values(_ block: anelm_block_q16) -> [Int] { withUnsafeBytes(of: block.q) { $0.bindMemory(to: Int16.self).map { Int($0) } } }

    /// Worked by hand from llama.cpp's quantize_row_q8_0/q8_1 (x86) and quantize_row_q8_K_ref: q = x·(127/amax)
    /// rounded to nearest with ties to even, the scale amax/127 rounded to f16 (q8_0, q8_1), q8_1's sum d·Σq as f16,
    /// q8_K's scale 1/iscale with iscale = -127/(the signed value of largest magnitude, the first of equals).
    func testGGMLActivationBlocksByHand() {
        var x = [Float](repeating: 0, count: 64)
        x[0...6] = [127, 2.5, -3.5, 0.5, -0.5, 1.5, 126.5]
        x[32] = 1
        x[33] = 0.3
        for kind in [Int32(ANELM_GGML_Q8_0), Int32(ANELM_GGML_Q8_1)] {
            let b = ggmlBlocks(kind, x)
            XCTAssertEqual(Array(values(b[0]).prefix(7)), [127, 2, -4, 0, 0, 2, 126])
            XCTAssertEqual(b[0].d, 1)
            XCTAssertEqual(b[0].s, 253)
            XCTAssertEqual(Array(values(b[1]).prefix(2)), [127, 38])  // 0.3 · 127 = 38.1
            XCTAssertEqual(b[1].d, anelm_f16_to_f32(anelm_f32_to_f16(1 / 127)))
            XCTAssertNotEqual(b[1].d, 1 / 127, "the scale is the f16 one")
        }
        // q8_1's sum is f16(d·Σq) with the unrounded d; q8_0's is the rounded d times Σq.
        XCTAssertEqual(ggmlBlocks(Int32(ANELM_GGML_Q8_1), x)[1].s, anelm_f16_to_f32(anelm_f32_to_f16(Float(1) / 127 * 165)))
        XCTAssertEqual(ggmlBlocks(Int32(ANELM_GGML_Q8_0), x)[1].s, anelm_f16_to_f32(anelm_f32_to_f16(1 / 127)) * 165)

        var k = [Float](repeating: 0, count: 768)
        k[0...3] = [-127, 127, 2.5, -3.5]  // max -127 (first of equal magnitudes): iscale 1
        k[256...258] = [127, -127, 2.5]  // max +127: iscale -1, every value negated
        let q = ggmlBlocks(Int32(ANELM_GGML_Q8_K), k)
        XCTAssertEqual(Array(values(q[0]).prefix(4)), [-127, 127, 2, -4])
        XCTAssertEqual(Array(values(q[8]).prefix(3)), [-127, 127, -2])
        XCTAssertTrue(q[0..<8].allSatisfy { $0.d == 1 }, "one scale per 256 values, in each of its 8 blocks")
        XCTAssertTrue(q[8..<16].allSatisfy { $0.d == -1 })
        XCTAssertEqual(q[0].s, -2)
        XCTAssertTrue(q[16..<24].allSatisfy { $0.d == 0 && $0.s == 0 && values($0).allSatisfy { $0 == 0 } }, "an all-zero super-block")
    }

    /// Weights marked to round activations like ggml multiply exactly the activations ggml would: the result equals
    /// Σ w·x̂ in double (x̂ = d·q of the ggml block, plus q8_1's f16 sum where a minimum multiplies it), on every
    /// ISA, decode and prefill (eight-token groups) alike.
    func testMatmulWithGGMLActivations() throws {
        let pool = ThreadPool(threads: 2)
        let types: [TensorType] = [.f16, .bf16, .q4_0, .q4_1, .q5_0, .q5_1, .q8_0, .q4_K, .q5_K, .q6_K]
        for type in types {
            for (rows, cols) in [(7, 512), (33, 256)] {
                var (w, dense) = try matrix(type, rows: rows, cols: cols)
                w.roundsActivationsLikeGGML = true
                for tokens in [1, 3, 4, 6, 19] {  // singles, a four-token group (and one more), eight-token groups
                    let x = random(tokens * cols)
                    var expected = [Double](repeating: 0, count: tokens * rows)
                    var bound = [Double](repeating: 0, count: tokens * rows)
                    for t in 0..<tokens {
                        let row = Array(x[t * cols..<(t + 1) * cols])
                        var xhat = [Double](repeating: 0, count: cols)
                        var sumCorrection = [Double](repeating: 0, count: cols / 32)  // q8_1: s − d·Σq per block
                        switch type {
                        case .f16, .bf16:
                            var rounded = [Float](repeating: 0, count: cols)
                            anelm_round_f32(Int32(type.rawValue), row, &rounded, cols)
                            xhat = rounded.map(Double.init)
                        default:
                            let kind = [.q4_1, .q5_1].contains(type) ? ANELM_GGML_Q8_1 : type.blockSize == 256 ? ANELM_GGML_Q8_K : ANELM_GGML_Q8_0
                            for (b, block) in ggmlBlocks(Int32(kind), row).enumerated() {
                                let q = values(block)
                                for j in 0..<32 { xhat[b * 32 + j] = Double(block.d) * Double(q[j]) }
                                sumCorrection[b] = Double(block.s) - Double(block.d) * Double(q.reduce(0, +))
                            }
                        }
                        for r in 0..<rows {
                            var sum = 0.0
                            var magnitude = 0.0
                            for c in 0..<cols {
                                sum += Double(dense[r * cols + c]) * xhat[c]
                                magnitude += abs(Double(dense[r * cols + c]) * xhat[c])
                            }
                            if [.q4_1, .q5_1].contains(type) {  // the block's minimum (f16 at byte 2) times the sum's rounding
                                for b in 0..<cols / 32 {
                                    let m = (w.data + r * w.rowBytes + b * type.bytesPerBlock + 2).loadUnaligned(as: UInt16.self)
                                    sum += Double(anelm_f16_to_f32(m)) * sumCorrection[b]
                                }
                            }
                            expected[t * rows + r] = sum
                            bound[t * rows + r] = 2e-6 * magnitude + 1e-6
                        }
                    }
                    for isa in Kernels.availableISAs {
                        Kernels.limitISA(isa)
                        let y = matmul(w, x, tokens: tokens, pool: pool)
                        for i in y.indices {
                            XCTAssertEqual(Double(y[i]), expected[i], accuracy: bound[i], "\(type) \(rows)x\(cols) tokens \(tokens) \(isa.name) [\(i)]")
                        }
                    }
                    Kernels.limitISA(nil)
                }
            }
        }
    }

}
