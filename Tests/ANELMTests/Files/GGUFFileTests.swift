import ANELM
import XCTest

final class GGUFFileTests: XCTestCase {
    func sample() -> GGUFWriter {
        var w = GGUFWriter()
        w.metadata = [
            ("general.architecture", .string("llama")), ("u8", .u8(200)), ("i8", .i8(-5)), ("u16", .u16(60000)),
            ("i16", .i16(-30000)), ("u32", .u32(4_000_000_000)), ("i32", .i32(-2_000_000_000)), ("f32", .f32(0.5)),
            ("bool", .bool(true)), ("u64", .u64(1 << 40)), ("i64", .i64(-(1 << 40))), ("f64", .f64(1e-6)),
            ("unicode", .string("héllo ✓ 世界")),
            ("strings", .array(elementType: 8, [.string("a"), .string(""), .string("ç")])),
            ("ints", .array(elementType: 5, [.i32(1), .i32(-2), .i32(3)])),
            ("nested", .array(elementType: 9, [.array(elementType: 0, [.u8(1)])])),
        ]
        w.tensors = [
            ("a", [3, 2], 0, floatBytes([1, 2, 3, 4, 5, 6])),
            ("b", [32], 8, [0x00, 0x3c] + (0..<32).map { UInt8(bitPattern: Int8($0 - 16)) }),
        ]
        return w
    }

    func testEveryValueTypeAndTensors() throws {
        let url = temporaryFile("sample.gguf")
        try sample().write(to: url)
        let f = try GGUFFile(path: url.path)
        XCTAssertEqual(f.version, 3)
        XCTAssertEqual(f.metadataKeys.first, "general.architecture")
        XCTAssertEqual(f.string("general.architecture"), "llama")
        XCTAssertEqual(f.int("u8"), 200)
        XCTAssertEqual(f.int("i8"), -5)
        XCTAssertEqual(f.int("u16"), 60000)
        XCTAssertEqual(f.int("i16"), -30000)
        XCTAssertEqual(f.int("u32"), 4_000_000_000)
        XCTAssertEqual(f.int("i32"), -2_000_000_000)
        XCTAssertEqual(f.double("f32"), 0.5)
        XCTAssertEqual(f.bool("bool"), true)
        XCTAssertEqual(f.int("u64"), 1 << 40)
        XCTAssertEqual(f.int("i64"), -(1 << 40))
        XCTAssertEqual(f.double("f64"), 1e-6)
        XCTAssertEqual(f.string("unicode"), "héllo ✓ 世界")
        XCTAssertEqual(f.strings("strings"), ["a", "", "ç"])
        XCTAssertEqual(f.ints("ints"), [1, -2, 3])
        XCTAssertEqual(f.arrayCount("nested"), 1)
        XCTAssertNil(f.string("u8"))
        XCTAssertNil(f.int("missing"))

        let a = try XCTUnwrap(try f.tensor(named: "a"))
        XCTAssertEqual(a.shape, [2, 3])
        XCTAssertEqual(a.type, .f32)
        XCTAssertEqual(Array(a.data.bindMemory(to: Float.self)), [1, 2, 3, 4, 5, 6])
        let b = try XCTUnwrap(try f.tensor(named: "b"))
        XCTAssertEqual(b.type, .q8_0)
        let m = try WeightMatrix.dequantized(b)
        XCTAssertEqual(Array(UnsafeBufferPointer(start: m.data.assumingMemoryBound(to: Float.self), count: 32)), (0..<32).map { Float($0 - 16) })
        XCTAssertNil(try f.tensor(named: "nope"))
    }

    func testVersion2AndCustomAlignment() throws {
        var w = sample()
        w.version = 2
        w.alignment = 64
        w.metadata.append(("general.alignment", .u32(64)))
        let url = temporaryFile("v2.gguf")
        try w.write(to: url)
        let f = try GGUFFile(path: url.path)
        XCTAssertEqual(f.version, 2)
        XCTAssertEqual(f.alignment, 64)
        XCTAssertEqual(try f.tensor(named: "a")?.shape, [2, 3])
    }

    func testUnsupportedTensorTypeIsNamed() throws {
        var w = GGUFWriter()
        w.tensors = [("k", [256], 10, [UInt8](repeating: 0, count: 84))]  // Q2_K
        let url = temporaryFile("q2k.gguf")
        try w.write(to: url)
        let f = try GGUFFile(path: url.path)
        XCTAssertEqual(f.tensorInfos.first?.typeName, "Q2_K")
        XCTAssertThrowsError(try f.tensor(named: "k")) { XCTAssertTrue("\($0)".contains("Q2_K"), "\($0)") }
    }

    func testBadMagicAndVersion() throws {
        let url = temporaryFile("bad.gguf")
        try Data("GGUX\u{3}\0\0\0".utf8).write(to: url)
        XCTAssertThrowsError(try GGUFFile(path: url.path)) { XCTAssertTrue("\($0)".contains("not a GGUF")) }
        var w = sample()
        w.version = 1
        try w.write(to: url)
        XCTAssertThrowsError(try GGUFFile(path: url.path)) { XCTAssertTrue("\($0)".contains("version 1")) }
        XCTAssertThrowsError(try GGUFFile(path: "/nonexistent/x.gguf"))
    }

    /// Every truncation of a valid file throws a clear error instead of crashing.
    func testEveryTruncationThrows() throws {
        let full = sample().data()
        let url = temporaryFile("trunc.gguf")
        var accepted = 0
        for length in stride(from: 1, to: full.count, by: 1) {
            try full.prefix(length).write(to: url)
            if (try? GGUFFile(path: url.path)) != nil { accepted += 1 }
        }
        // Only cuts inside the padding after the last tensor's bytes can still parse.
        XCTAssertLessThan(accepted, 32)
    }

    /// Random byte corruption (a small fuzz run; seeds fixed): never a crash, and tensors that
    /// still load stay inside the file.
    func testRandomCorruptionNeverCrashes() throws {
        let original = [UInt8](sample().data())
        let url = temporaryFile("fuzz.gguf")
        var rng = SeededGenerator(seed: 42)
        for _ in 0..<3000 {
            var bytes = original
            for _ in 0..<Int(rng.next() % 4 + 1) {
                let i = Int(rng.next() % UInt64(bytes.count))
                bytes[i] = UInt8(truncatingIfNeeded: rng.next())
            }
            try Data(bytes).write(to: url)
            guard let f = try? GGUFFile(path: url.path) else { continue }
            for name in f.tensorNames { _ = try? f.tensor(named: name).map { try WeightMatrix.dequantized($0) } }
        }
    }

    func testRealDefaultModel() throws {
        guard let path = defaultModelPath() else { throw XCTSkip("default model not installed (scripts/test installs it)") }
        let f = try GGUFFile(path: path)
        XCTAssertEqual(f.version, 3)
        XCTAssertEqual(f.string("general.architecture"), "llama")
        XCTAssertEqual(f.int("llama.embedding_length"), 576)
        XCTAssertEqual(f.int("llama.block_count"), 30)
        XCTAssertEqual(f.arrayCount("tokenizer.ggml.tokens"), 49152)
        XCTAssertEqual(f.tensorInfos.count, 272)
        let embedding = try XCTUnwrap(try f.tensor(named: "token_embd.weight"))
        XCTAssertEqual(embedding.shape, [49152, 576])
        XCTAssertEqual(embedding.type, .q8_0)
        XCTAssertEqual(try f.tensor(named: "blk.0.attn_q.weight")?.type, .q4_1)
    }
}
