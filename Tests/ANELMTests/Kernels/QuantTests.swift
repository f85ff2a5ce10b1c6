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
            let halves = type == .q6_K ? [208] : [.q5_1, .q4_K, .q5_K].contains(type) ? [0, 2] : [0]
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
}
