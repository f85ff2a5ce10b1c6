import ANELM
import CANELMKernels
import XCTest

/// The quantizers against gguf-py's reference (committed fixtures from tools/reference/convert_fixtures.py), bit for
/// bit; the K-quants (no gguf-py quantizer) by their round-trip error.
final class QuantizerTests: XCTestCase {
    static let directory = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures/convert")

    func input() throws -> [Float] {
        let data = try Data(contentsOf: Self.directory.appendingPathComponent("input.f32"))
        return data.withUnsafeBytes { Array($0.bindMemory(to: Float.self)) }
    }

    func testBitExactWithGGUFPy() throws {
        let values = try input()
        XCTAssertEqual(values.count, 14 * 256)
        for type in [TensorType.f16, .bf16, .q8_0, .q4_0, .q4_1, .q5_0, .q5_1] {
            let expected = try [UInt8](Data(contentsOf: Self.directory.appendingPathComponent("\(type).bin")))
            let got = try values.withUnsafeBufferPointer { try Quantizer.encode($0, rowLength: 256, as: type, name: "t") }
            XCTAssertEqual(got.count, expected.count, "\(type)")
            let firstDifference = zip(got, expected).enumerated().first { $0.element.0 != $0.element.1 }?.offset
            XCTAssertNil(firstDifference, "\(type): first differing byte \(firstDifference ?? -1) (block \((firstDifference ?? 0) / type.bytesPerBlock))")
        }
    }

    func testRefusesNonFiniteAndPartialBlocks() {
        var values = [Float](repeating: 1, count: 64)
        values[17] = .nan
        XCTAssertThrowsError(try values.withUnsafeBufferPointer { try Quantizer.encode($0, rowLength: 64, as: .q8_0, name: "w") }) {
            XCTAssertTrue("\($0)".contains("non-finite"), "\($0)")
        }
        values[17] = .infinity
        XCTAssertThrowsError(try values.withUnsafeBufferPointer { try Quantizer.encode($0, rowLength: 64, as: .f16, name: "w") })
        let rows = [Float](repeating: 1, count: 48)
        XCTAssertThrowsError(try rows.withUnsafeBufferPointer { try Quantizer.encode($0, rowLength: 48, as: .q4_0, name: "w") }) {
            XCTAssertTrue("\($0)".contains("block size"), "\($0)")
        }
    }

    /// Relative RMS error of quantize → dequantize (anelm's dequantizer is checked against gguf-py in QuantTests).
    func roundTripError(_ type: TensorType, _ values: [Float]) throws -> Double {
        let bytes = try values.withUnsafeBufferPointer { try Quantizer.encode($0, rowLength: 256, as: type, name: "t") }
        var back = [Float](repeating: .nan, count: values.count)
        let ok = bytes.withUnsafeBytes { raw in back.withUnsafeMutableBufferPointer { anelm_dequantize(Int32(type.rawValue), raw.baseAddress!, $0.baseAddress!, values.count) } }
        XCTAssertEqual(ok, 1)
        var error = 0.0
        var energy = 0.0
        for (a, b) in zip(values, back) {
            error += Double(a - b) * Double(a - b)
            energy += Double(a) * Double(a)
        }
        return (error / max(energy, 1e-30)).squareRoot()
    }

    func testKQuantsRoundTrip() throws {
        var rng = SeededGenerator(seed: 7)
        // Box–Muller normals.
        let gaussian = (0..<(64 * 256)).map { _ -> Float in
            let u = Double.random(in: Double.ulpOfOne..<1, using: &rng)
            let v = Double.random(in: 0..<1, using: &rng)
            return Float((-2 * log(u)).squareRoot() * cos(2 * .pi * v)) * 0.05
        }
        let errors = try [TensorType.q4_0, .q4_1, .q5_0, .q5_1, .q8_0, .q4_K, .q5_K, .q6_K].map { ($0, try roundTripError($0, gaussian)) }
        let byType = Dictionary(uniqueKeysWithValues: errors)
        // Each K-quant beats the legacy type of the same bits (its purpose); measured levels, with headroom.
        XCTAssertLessThan(byType[.q4_K]!, byType[.q4_1]!, "\(errors)")
        XCTAssertLessThan(byType[.q5_K]!, byType[.q5_1]!, "\(errors)")
        XCTAssertLessThan(byType[.q6_K]!, byType[.q5_K]!, "\(errors)")
        XCTAssertLessThan(byType[.q4_K]!, 0.11, "\(errors)")
        XCTAssertLessThan(byType[.q5_K]!, 0.055, "\(errors)")
        XCTAssertLessThan(byType[.q6_K]!, 0.03, "\(errors)")
        // Awkward super-blocks: zero, constant, one spike, all negative; nothing non-finite comes back.
        var awkward = [Float](repeating: 0, count: 256)
        awkward += [Float](repeating: 0.3, count: 256)
        awkward += (0..<256).map { $0 == 100 ? 7 : 0 }
        awkward += (0..<256).map { -1 - Float($0 % 7) }
        for type in [TensorType.q4_K, .q5_K, .q6_K] {
            let e = try roundTripError(type, awkward)
            XCTAssertTrue(e.isFinite && e < 0.1, "\(type): \(e)")
        }
    }
}
