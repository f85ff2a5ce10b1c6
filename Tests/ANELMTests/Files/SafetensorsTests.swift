import ANELM
import XCTest

final class SafetensorsTests: XCTestCase {
    /// A safetensors file from (name, dtype, shape, bytes) entries.
    func safetensors(_ entries: [(String, String, [Int], [UInt8])], header extra: String? = nil) -> Data {
        var json = "{\"__metadata__\":{\"format\":\"pt\"}"
        var data: [UInt8] = []
        for (name, dtype, shape, bytes) in entries {
            json += ",\"\(name)\":{\"dtype\":\"\(dtype)\",\"shape\":\(shape),\"data_offsets\":[\(data.count),\(data.count + bytes.count)]}"
            data += bytes
        }
        json = (extra ?? json) + (extra == nil ? "}" : "")
        var out = Data()
        withUnsafeBytes(of: UInt64(json.utf8.count).littleEndian) { out.append(contentsOf: $0) }
        out.append(contentsOf: Array(json.utf8))
        out.append(contentsOf: data)
        return out
    }

    func testReadsF32F16BF16() throws {
        let url = temporaryFile("t.safetensors")
        let f16: [UInt8] = [0x00, 0x3c, 0x00, 0xc0]  // 1, -2
        let bf16: [UInt8] = [0x80, 0x3f, 0x40, 0x40]  // 1, 3
        try safetensors([("a", "F32", [2, 2], floatBytes([1, 2, 3, 4])), ("b", "F16", [2], f16), ("c", "BF16", [1, 2], bf16)]).write(to: url)
        let file = try SafetensorsFile(path: url.path)
        XCTAssertEqual(file.tensorNames, ["a", "b", "c"])
        let a = try XCTUnwrap(try file.tensor(named: "a"))
        XCTAssertEqual(a.shape, [2, 2])
        XCTAssertEqual(Array(a.data.bindMemory(to: Float.self)), [1, 2, 3, 4])
        func values(_ name: String) throws -> [Float] {
            let m = try WeightMatrix.dequantized(try XCTUnwrap(try file.tensor(named: name)))
            return Array(UnsafeBufferPointer(start: m.data.assumingMemoryBound(to: Float.self), count: m.rows * m.cols))
        }
        XCTAssertEqual(try values("b"), [1, -2])
        XCTAssertEqual(try values("c"), [1, 3])
    }

    func testBadFilesGiveClearErrors() throws {
        let url = temporaryFile("bad.safetensors")
        let cases: [(Data, String)] = [
            (safetensors([("a", "I64", [1], [UInt8](repeating: 0, count: 8))]), "I64"),
            (safetensors([("a", "F32", [3], floatBytes([1, 2]))]), "needs"),
            (safetensors([], header: "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,400]}}"), "outside"),
            (safetensors([], header: "{\"a\":{\"dtype\":\"F32\",\"shape\":\"x\",\"data_offsets\":[0,4]}}"), "malformed"),
            (safetensors([], header: "[1,2"), "JSON"),
            (Data([1, 2, 3]), "truncated"),
            (Data([0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 1]), "length"),
        ]
        for (data, expected) in cases {
            try data.write(to: url)
            XCTAssertThrowsError(try { _ = try SafetensorsFile(path: url.path).tensorNames.map { try SafetensorsFile(path: url.path).tensor(named: $0) } }()) {
                XCTAssertTrue("\($0)".contains(expected), "expected '\(expected)' in: \($0)")
            }
        }
    }

    func testRandomCorruptionNeverCrashes() throws {
        let original = [UInt8](safetensors([("a", "F32", [2, 2], floatBytes([1, 2, 3, 4])), ("b", "F16", [2], [0, 0x3c, 0, 0x3c])]))
        let url = temporaryFile("fuzz.safetensors")
        var rng = SeededGenerator(seed: 9)
        for _ in 0..<2000 {
            var bytes = original
            for _ in 0..<Int(rng.next() % 3 + 1) { bytes[Int(rng.next() % UInt64(bytes.count))] = UInt8(truncatingIfNeeded: rng.next()) }
            if rng.next() % 4 == 0 { bytes.removeLast(Int(rng.next() % UInt64(bytes.count))) }
            try Data(bytes).write(to: url)
            guard let file = try? SafetensorsFile(path: url.path) else { continue }
            for name in file.tensorNames { _ = try? file.tensor(named: name).map { try WeightMatrix.dequantized($0) } }
        }
    }

    func testHuggingFaceFolderErrors() throws {
        let dir = temporaryFile("hf-empty")
        try? FileManager.default.removeItem(at: dir)
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        XCTAssertThrowsError(try HFModelFolder(path: dir.path)) { XCTAssertTrue("\($0)".contains("config.json")) }
        try Data("{}".utf8).write(to: dir.appendingPathComponent("config.json"))
        XCTAssertThrowsError(try HFModelFolder(path: dir.path)) { XCTAssertTrue("\($0)".contains("safetensors")) }
        try Data("{\"weight_map\":{\"a\":\"../x.safetensors\"}}".utf8).write(to: dir.appendingPathComponent("model.safetensors.index.json"))
        XCTAssertThrowsError(try HFModelFolder(path: dir.path)) { XCTAssertTrue("\($0)".contains("outside")) }
    }
}
