import ANELM
import CANELMKernels
import Foundation
import XCTest

/// The Core ML export's pieces: protobuf bytes, the weight file, weight compression, and whole packages.
final class ExportTests: XCTestCase {
    // MARK: Protobuf

    /// The examples of protobuf.dev/programming-guides/encoding.
    func testWireFormat() {
        var w = ProtobufWriter()
        w.uint(1, 150)
        XCTAssertEqual(w.bytes, [0x08, 0x96, 0x01])
        w = ProtobufWriter()
        w.string(2, "testing")
        XCTAssertEqual(w.bytes, [0x12, 0x07] + Array("testing".utf8))
        w = ProtobufWriter()
        w.packedInts(4, [3, 270, 86942])
        XCTAssertEqual(w.bytes, [0x22, 0x06, 0x03, 0x8E, 0x02, 0x9E, 0xA7, 0x05])
        w = ProtobufWriter()
        w.int(1, -1)  // int32 -1: ten bytes, two's complement
        XCTAssertEqual(w.bytes, [0x08] + [UInt8](repeating: 0xFF, count: 9) + [0x01])
        XCTAssertEqual([0, -1, 1, -2, 2_147_483_647, -2_147_483_648].map(ProtobufWriter.zigzag), [0, 1, 2, 3, 4_294_967_294, 4_294_967_295])
        w = ProtobufWriter()
        w.fixed32(5, 0x0102_0304)
        w.fixed64(6, 1)
        XCTAssertEqual(w.bytes, [0x2D, 0x04, 0x03, 0x02, 0x01, 0x31, 1, 0, 0, 0, 0, 0, 0, 0])
        w = ProtobufWriter()
        w.uint(1, 0)  // proto3 defaults are not written…
        w.string(2, "")
        w.uint(3, 0, always: true)  // …unless they are oneof members
        XCTAssertEqual(w.bytes, [0x18, 0x00])
    }

    /// Core ML messages against the bytes coremltools' own protobuf classes serialize (MIL_pb2, Model_pb2).
    func testCoreMLMessagesMatchCoremltools() {
        func bytes(_ body: (inout ProtobufWriter) -> Void) -> String {
            var w = ProtobufWriter()
            body(&w)
            return w.bytes.map { String(format: "%02x", $0) }.joined()
        }
        let x = MILTensorType(dataType: .float16, shape: [1, 4, 1, 1])
        XCTAssertEqual(bytes { namedValueType("x", .tensor(x), &$0) }, "0a0178121e0a1c080a10041a040a0208011a040a0208041a040a0208011a040a020801")
        XCTAssertEqual(
            bytes { namedValueType("s", .state(MILTensorType(dataType: .float16, shape: [1, 16, 1, 32])), &$0) },
            "0a017312222a200a1e0a1c080a10041a040a0208011a040a0208101a040a0208011a040a020820")
        let blob = MILValue(type: MILTensorType(dataType: .float16, shape: [8, 4, 1, 1]), storage: .blob(file: "@model_path/weights/weight.bin", offset: 64))
        XCTAssertEqual(
            bytes { blob.encode(into: &$0) },
            "121e0a1c080a10041a040a0208081a040a0208041a040a0208011a040a0208012a220a1e406d6f64656c5f706174682f776569676874732f7765696768742e62696e1040")
        XCTAssertEqual(bytes { MILValue.int32s([1, -1]).encode(into: &$0) }, "120c0a0a081710011a040a0208021a110a0f120d0a0b01ffffffffffffffffff01")
        XCTAssertEqual(bytes { MILValue.string("valid").encode(into: &$0) }, "12040a0208021a0b0a0922070a0576616c6964")
        let op = MILOperation(
            type: "add", inputs: [("x", [.name("a")])], outputs: [("z", .tensor(MILTensorType(dataType: .float16, shape: [1])))],
            attributes: [("name", .string("valid"))])
        XCTAssertEqual(
            bytes { op.encode(into: &$0) },
            "0a03616464120a0a017812050a030a01611a110a017a120c0a0a080a10011a040a0208012a1b0a046e616d65121312040a0208021a0b0a0922070a0576616c6964")
        let model = CoreMLModel(
            specificationVersion: 9,
            functions: [
                CoreMLFunctionDescription(
                    name: "decode", inputs: [CoreMLFeature(name: "token", dataType: .int32, shape: [1, 1, 1, 1])], outputs: [],
                    states: [CoreMLFeature(name: "s", dataType: .float16, shape: [1, 16, 1, 32], isState: true)])
            ],
            defaultFunctionName: "decode", userDefined: [("k", "v")], program: MILProgram(functions: []))
        XCTAssertEqual(
            model.serialized().map { String(format: "%02x", $0) }.joined(),
            "0809124ca201340a066465636f646512150a05746f6b656e1a0c2a0a0a040101010110a0800832130a01731a0e420c0a0a0a040110012010908004aa01066465636f6465a20609a206060a016b120176b21f020801"
        )
    }

    // MARK: weight.bin

    /// MILBlob storage v2: 64-byte header with the count, per blob 64-byte metadata at a 64-byte boundary
    /// (sentinel, type, size, data offset, padding bits), data right after, zeros between, no tail.
    func testBlobLayout() throws {
        let path = temporaryFile("layout-weight.bin").path
        let writer = try MILBlobWriter(path: path)
        let a = try writer.append(.float16, littleEndianBytes([0x3C00, 0x4000, 0xC000]), elements: 3)
        let b = try writer.append(.int8, [UInt8](repeating: 7, count: 70), elements: 70)
        let c = try writer.append(.uint4, packSubByte([1, 2, 3, 4, 5], bits: 4), elements: 5)
        let d = try writer.append(.uint6, packSubByte([1, 2, 3], bits: 6), elements: 3)
        XCTAssertThrowsError(try writer.append(.float16, [0, 0, 0], elements: 2))
        try writer.finish()
        XCTAssertEqual([a, b, c, d], [64, 192, 384, 512])
        let file = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
        func u32(_ o: Int) -> UInt32 { file[o..<(o + 4)].enumerated().reduce(0) { $0 | UInt32($1.element) << (8 * $1.offset) } }
        func u64(_ o: Int) -> UInt64 { file[o..<(o + 8)].enumerated().reduce(0) { $0 | UInt64($1.element) << (8 * $1.offset) } }
        XCTAssertEqual(u32(0), 4)
        XCTAssertEqual(u32(4), 2)
        XCTAssertTrue(file[8..<64].allSatisfy { $0 == 0 })
        for (offset, type, size, padding) in [(64, 1, 6, 0), (192, 4, 70, 0), (384, 11, 3, 4), (512, 13, 3, 6)] {
            XCTAssertEqual(u32(offset), 0xDEAD_BEEF)
            XCTAssertEqual(u32(offset + 4), UInt32(type))
            XCTAssertEqual(u64(offset + 8), UInt64(size))
            XCTAssertEqual(u64(offset + 16), UInt64(offset + 64))
            XCTAssertEqual(u64(offset + 24), UInt64(padding))
            XCTAssertTrue(file[(offset + 32)..<(offset + 64)].allSatisfy { $0 == 0 })
        }
        XCTAssertEqual(Array(file[128..<134]), [0x00, 0x3C, 0x00, 0x40, 0x00, 0xC0])
        XCTAssertTrue(file[134..<192].allSatisfy { $0 == 0 })
        XCTAssertEqual(Array(file[448..<451]), [0x21, 0x43, 0x05])
        XCTAssertEqual(file.count, 512 + 64 + 3)
    }

    /// Sub-byte values as MILBlob packs them: a little-endian bit stream.
    func testSubBytePacking() {
        XCTAssertEqual(packSubByte([1, 2, 3], bits: 4), [0x21, 0x03])
        XCTAssertEqual(packSubByte([15, 0, 9, 6], bits: 4), [0x0F, 0x69])
        // uint6: 1 in bits 0-5, 2 in 6-11, 3 in 12-17, 63 in 18-23.
        XCTAssertEqual(packSubByte([1, 2, 3, 63], bits: 6), [0x81, 0x30, 0xFC])
        XCTAssertEqual(packSubByte([63, 63], bits: 6), [0xFF, 0x0F])
    }

    // MARK: Compression

    /// Normal weights (a fixed seed): int8 keeps each value within half a step of its block's scale; 4 and
    /// 6 bits palettize with each index on its nearest table entry, near the optimum for a normal
    /// distribution (Lloyd-Max: relative RMS error 0.097 at 16 levels, 0.027 at 64).
    func testInt8AndPalettizedRoundTrip() {
        var state: UInt64 = 42
        func uniform() -> Double {  // SeededGenerator
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return (Double((z ^ (z >> 31)) >> 11) + 0.5) / 9_007_199_254_740_992
        }
        let rows = 64
        let cols = 96
        let w = (0..<(rows * cols)).map { _ in Float(0.05 * (-2 * log(uniform())).squareRoot() * cos(2 * Double.pi * uniform())) }
        let bits = w.map(anelmFP16)
        let source = bits.map(anelmFloat)
        func relativeRMS(_ r: [Float]) -> Double {
            (zip(source, r).map { Double($0 - $1) * Double($0 - $1) }.reduce(0, +) / source.map { Double($0) * Double($0) }.reduce(0, +)).squareRoot()
        }

        let q = BlockwiseInt8(fp16: bits, rows: rows, cols: cols, block: 32)
        XCTAssertEqual(q.scales.count, rows * 3)
        let d = q.dequantized()
        for i in source.indices {
            let s = anelmFloat(q.scales[(i / cols) * 3 + (i % cols) / 32])
            XCTAssertLessThanOrEqual(abs(d[i] - source[i]), s / 2 * 1.0001, "\(i)")
            XCTAssertTrue((-127...127).contains(Int(q.data[i])))
        }
        let int8Error = relativeRMS(d)
        // Per output channel (`--weights int8`): one block of all 96 columns, one scale per row.
        let perChannel = BlockwiseInt8(fp16: bits, rows: rows, cols: cols, block: cols)
        XCTAssertEqual(perChannel.scales.count, rows)
        let dc = perChannel.dequantized()
        for i in source.indices { XCTAssertLessThanOrEqual(abs(dc[i] - source[i]), anelmFloat(perChannel.scales[i / cols]) / 2 * 1.0001, "\(i)") }
        let perChannelError = relativeRMS(dc)

        var errors = [Double]()
        for b in [4, 6, 8] {
            let p = Palettized(fp16: bits, rows: rows, cols: cols, bits: b, groupRows: 16)
            XCTAssertEqual(p.lut.count, rows / 16 * (1 << b))
            for g in 0..<(rows / 16) {
                let table = p.lut[(g << b)..<((g + 1) << b)].map(anelmFloat)
                XCTAssertEqual(table, table.sorted())
                for i in (g * 16 * cols)..<((g + 1) * 16 * cols) {
                    let chosen = abs(table[Int(p.indices[i])] - source[i])
                    XCTAssertEqual(chosen, table.map { abs($0 - source[i]) }.min()!, "index \(i) is not the nearest entry")
                }
            }
            errors.append(relativeRMS(p.dequantized()))
        }
        print(
            "compression of a 64x96 matrix: relative RMS error int8 per block \(int8Error), per channel \(perChannelError), lut4 \(errors[0]), lut6 \(errors[1]), lut8 \(errors[2])"
        )
        XCTAssertLessThan(int8Error, 0.01)
        XCTAssertLessThan(perChannelError, 0.012)
        XCTAssertLessThan(errors[2], 0.01)
        XCTAssertLessThan(errors[0], 0.11)
        XCTAssertLessThan(errors[1], 0.035)

        // As many distinct values as table entries: k-means finds them all, the reconstruction is exact.
        let levels: [Float] = (0..<16).map { Float($0) * 0.25 - 2 }
        let exact = (0..<(32 * 8)).map { anelmFP16(levels[($0 * 7) % 16]) }
        let p = Palettized(fp16: exact, rows: 32, cols: 8, bits: 4, groupRows: 32)
        XCTAssertEqual(p.dequantized(), exact.map(anelmFloat))
    }

    // MARK: Packages

    func testExportTinyLlama() throws {
        let folder = ModelFixture.directory.appendingPathComponent("tiny-llama").path
        let loaded = try ModelLoader.load(folder)
        let path = freshPackagePath("tiny-llama")
        let summary = try CoreMLPackage.export(loaded, to: path, options: ANELoweringOptions(contextLength: 32, prefillBlock: 16))
        let root = URL(fileURLWithPath: path)
        for file in [
            "Manifest.json", CoreMLPackage.modelPath, CoreMLPackage.weightsPath, CoreMLPackage.infoPath,
            CoreMLPackage.tokenizerPath + "/tokenizer.json", CoreMLPackage.tokenizerPath + "/config.json",
        ] {
            XCTAssertTrue(FileManager.default.fileExists(atPath: root.appendingPathComponent(file).path), file)
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: path + ".partial"))

        // Manifest.json: every item exists under Data/, the root is the model.
        let manifest = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(contentsOf: root.appendingPathComponent("Manifest.json"))) as? [String: Any])
        XCTAssertEqual(manifest["fileFormatVersion"] as? String, "1.0.0")
        let items = try XCTUnwrap(manifest["itemInfoEntries"] as? [String: [String: String]])
        let rootItem = try XCTUnwrap(items[try XCTUnwrap(manifest["rootModelIdentifier"] as? String)])
        XCTAssertEqual(rootItem["path"], "com.apple.CoreML/model.mlmodel")
        for item in items.values { XCTAssertTrue(FileManager.default.fileExists(atPath: root.appendingPathComponent("Data/" + item["path"]!).path)) }

        let info = try ANEPackageInfo.read(package: path)
        XCTAssertEqual(
            info,
            ANEPackageInfo(
                architecture: "LlamaForCausalLM", source: "tiny-llama", weights: "fp16", functions: ["decode", "prefill"], contextLength: 32,
                prefillBlock: 16, vocabSize: 512, outputChunks: 1, eosTokenIds: [4],
                metadata: ["context_length": 32, "vocab_size": 512, "output_chunks": 1, "layers": 3, "prefill_block": 16]))
        let json = try String(contentsOf: root.appendingPathComponent(CoreMLPackage.infoPath), encoding: .utf8)
        for key in ["\"format_version\" : 1", "\"context_length\" : 32", "\"eos_token_ids\"", "\"output_chunks\" : 1"] {
            XCTAssertTrue(json.contains(key), key)
        }

        // The tokenizer folder loads as the model's tokenizer.
        let text = try ModelLoader.loadText(root.appendingPathComponent(CoreMLPackage.tokenizerPath).path)
        XCTAssertEqual(text.tokenizer.encode("Hello, world! ünïcode"), loaded.tokenizer.encode("Hello, world! ünïcode"))
        XCTAssertEqual(text.endOfSequenceIds, loaded.endOfSequenceIds)
        XCTAssertEqual(text.chatTemplate, loaded.chatTemplate)

        // model.mlmodel: specification version 9, its function and opset, read back with a minimal protobuf reader.
        let model = [UInt8](try Data(contentsOf: root.appendingPathComponent(CoreMLPackage.modelPath)))
        let fields = try ProtobufFields(model)
        XCTAssertEqual(fields.varint(1), 9)
        let description = try ProtobufFields(try XCTUnwrap(fields.bytes(2).first))
        XCTAssertEqual(try ProtobufFields(try XCTUnwrap(description.bytes(20).first)).string(1), "decode")
        XCTAssertEqual(description.string(21), "decode")
        let program = try ProtobufFields(try XCTUnwrap(fields.bytes(502).first))
        XCTAssertEqual(program.varint(1), 1)
        let function = try ProtobufFields(try ProtobufFields(try XCTUnwrap(program.bytes(2).first)).bytes(2)[0])
        XCTAssertEqual(function.string(2), "CoreML8")
        XCTAssertEqual(function.bytes(1).count, 3 + 1, "token, position_onehot, attention_mask + the KV cache state")
        XCTAssertEqual(summary.operations.map(\.function), ["decode", "prefill"])
        print("tiny-llama export: MIL ops \(summary.operations)")

        // weight.bin: its header counts the blobs; the file ends with the last one.
        let weights = [UInt8](try Data(contentsOf: root.appendingPathComponent(CoreMLPackage.weightsPath)))
        XCTAssertEqual(Int(weights[0]) | Int(weights[1]) << 8, summary.blobs)
        XCTAssertEqual(weights.count, summary.weightBytes)
    }

    /// The lowering's two functions share states and constants: each constant is written once, so
    /// weight.bin is the same size as for decode alone.
    func testFunctionsShareConstants() throws {
        let loaded = try ModelLoader.load(ModelFixture.directory.appendingPathComponent("tiny-llama").path)
        let program = try ANELowering.program(loaded, options: ANELoweringOptions(contextLength: 16, prefillBlock: 8))
        XCTAssertEqual(program.functions.map(\.name), ["decode", "prefill"])
        let info = try ANEPackageInfo(program: program, loaded: loaded, weights: .int8)
        let decode = try ANEProgram(functions: [program.functions[0]], metadata: program.metadata)
        let one = try CoreMLPackage.write(decode, info: info, tokenizer: nil, to: freshPackagePath("one"), weights: .int8)
        let two = try CoreMLPackage.write(program, info: info, tokenizer: loaded.source, to: freshPackagePath("two"), weights: .int8)
        XCTAssertEqual(two.weightBytes, one.weightBytes)
        XCTAssertEqual(two.blobs, one.blobs)
        XCTAssertEqual(two.compressedWeights, one.compressedWeights)
        XCTAssertEqual(two.operations.map(\.function), ["decode", "prefill"])
        XCTAssertEqual(info.prefillBlock, 8)
    }

    /// `maxPackageBytes` below the model's weights splits it into consecutive chunk packages, each
    /// naming the chain in its anelm.json, each passing the ANE lint; the chain covers every layer once.
    func testChunkedExport() throws {
        let loaded = try ModelLoader.load(ModelFixture.directory.appendingPathComponent("tiny-llama").path)
        let path = freshPackagePath("chunked")
        let paths = CoreMLPackage.chunkPaths(path, count: 3)
        for p in paths { try? FileManager.default.removeItem(atPath: p) }
        let summary = try CoreMLPackage.export(loaded, to: path, options: ANELoweringOptions(contextLength: 32, prefillBlock: 8), maxPackageBytes: 150_000)
        var layers = [Int]()
        for (i, p) in paths.enumerated() {
            let info = try ANEPackageInfo.read(package: p)
            XCTAssertEqual(info.chunks, paths.map { URL(fileURLWithPath: $0).lastPathComponent })
            XCTAssertEqual(info.chunkIndex, i)
            layers += try XCTUnwrap(info.chunkLayers)
            XCTAssertEqual(info.vocabSize, 512)
            let lint = try ANELint(package: p)
            XCTAssertTrue(lint.violations.isEmpty, lint.text)
            let states = try MILProgramReader(package: p).functions.map { $0.states.map { $0.type?.staticShape ?? [] } }
            XCTAssertEqual(Set(states.map { $0.count }), [1])
        }
        XCTAssertEqual(layers, [0, 1, 1, 2, 2, 3])
        XCTAssertEqual(summary.operations.count, 6)
        XCTAssertFalse(FileManager.default.fileExists(atPath: CoreMLPackage.chunkPaths(path, count: 4)[3]))
    }

    /// Chunks are as few as the limit allows and as even as the layers allow.
    func testBalancedChunks() {
        func sizes(_ ranges: [Range<Int>], _ bytes: [Int]) -> [Int] { ranges.map { bytes[$0].reduce(0, +) } }
        // Greedy filling gives 90, 90, 30; balanced: three packages of 90, 60, 60 in some order.
        let seven = [Int](repeating: 30, count: 7)
        let even = CoreMLPackage.balancedRanges(seven, maxBytes: 100)
        XCTAssertEqual(even.count, 3)
        XCTAssertEqual(sizes(even, seven).sorted(), [60, 60, 90])
        XCTAssertEqual(even.first?.lowerBound, 0)
        XCTAssertEqual(even.last?.upperBound, 7)
        XCTAssertTrue(zip(even, even.dropFirst()).allSatisfy { $0.upperBound == $1.lowerBound })
        // One layer over the limit gets its own package; the rest still fit.
        XCTAssertEqual(CoreMLPackage.balancedRanges([10, 500, 10, 10], maxBytes: 100), [0..<1, 1..<2, 2..<4])
        XCTAssertEqual(CoreMLPackage.balancedRanges([40, 40], maxBytes: 100), [0..<2])
        XCTAssertEqual(CoreMLPackage.balancedRanges([7], maxBytes: 1), [0..<1])
        XCTAssertEqual(CoreMLPackage.balancedRanges([], maxBytes: 1), [])
        // The default model's shape: embedding on the first layer, output head on the last.
        let model = [60] + [Int](repeating: 10, count: 28) + [60]
        let split = sizes(CoreMLPackage.balancedRanges(model, maxBytes: 150), model)  // greedy: 150, 150, 100
        XCTAssertEqual(split.count, 3)
        XCTAssertLessThanOrEqual(split.max()! - split.min()!, 10, "\(split)")
        XCTAssertLessThanOrEqual(split.max()!, 150)
    }

    /// The lint reads a package's MIL back: per-block int8 and CPU-placed ops are violations, per-channel
    /// int8 a warning; a clean export has no violation.
    func testLint() throws {
        let loaded = try ModelLoader.load(ModelFixture.directory.appendingPathComponent("tiny-qwen2").path)
        let options = ANELoweringOptions(contextLength: 16, prefillBlock: 4)
        var results: [ANEWeightFormat: ANELint] = [:]
        for format in [ANEWeightFormat.fp16, .int8, .int8Blockwise, .lut4] {
            let path = freshPackagePath("lint-\(format.rawValue)")
            _ = try CoreMLPackage.export(loaded, to: path, options: options, weights: format)
            results[format] = try ANELint(package: path)
        }
        XCTAssertTrue(try XCTUnwrap(results[.fp16]).violations.isEmpty)
        XCTAssertTrue(try XCTUnwrap(results[.lut4]).findings.filter { $0.severity != .note }.isEmpty, results[.lut4]?.text ?? "")
        XCTAssertTrue(try XCTUnwrap(results[.int8]).violations.isEmpty)
        XCTAssertTrue(try XCTUnwrap(results[.int8]).findings.contains { $0.rule.id == "quantization" && $0.severity == .warning })
        XCTAssertTrue(try XCTUnwrap(results[.int8Blockwise]).violations.contains { $0.rule.id == "quantization" })

        // A graph with the old argmax head, three states of two shapes and an fp32-free but 16,385-wide conv.
        let g = ANEGraphBuilder()
        let x = g.input("x", shape: [1, 4, 1, 1])
        for (i, shape) in [[1, 4, 1, 8], [1, 4, 1, 8], [2, 4, 1, 8]].enumerated() {
            let s = g.readState("s\(i)", shape: shape)
            try g.writeState(s.state, s.value)
        }
        let wide = try g.conv(x, weight: g.constant("w", fp16Bits: [UInt16](repeating: 0, count: 16_385 * 4), shape: [16_385, 4, 1, 1]))
        try g.output("argmax", try g.reduceArgmax(wide, axis: 1))
        let graph = g.build()
        let path = freshPackagePath("lint-bad")
        let info = ANEPackageInfo(
            architecture: "test", source: "test", weights: "fp16", functions: ["main"], contextLength: 8, prefillBlock: nil,
            vocabSize: 16_385, outputChunks: 1, eosTokenIds: [], metadata: [:])
        _ = try CoreMLPackage.write(try ANEProgram(functions: [.init(name: "main", graph: graph)], metadata: [:]), info: info, tokenizer: nil, to: path)
        let bad = try ANELint(package: path)
        XCTAssertEqual(Set(bad.violations.map(\.rule.id)), ["states", "cpu-ops", "dimensions"], bad.text)
    }

    func testBadInputIsAnError() throws {
        let loaded = try ModelLoader.load(ModelFixture.directory.appendingPathComponent("tiny-llama").path)
        let existing = freshPackagePath("existing")
        try FileManager.default.createDirectory(atPath: existing, withIntermediateDirectories: true)
        let cases: [(String, String)] = [
            (existing, "already exists"),
            (temporaryFile("model.mlmodel").path, "must end in .mlpackage"),
            (temporaryFile("no-such-folder").appendingPathComponent("x.mlpackage").path, "does not exist"),
        ]
        for (path, message) in cases {
            XCTAssertThrowsError(try CoreMLPackage.export(loaded, to: path)) { XCTAssertTrue("\($0)".contains(message), "\($0)") }
        }
        // xLSTM exports now (a recurrent program: ANELoweringXLSTMTests and tools/coreml/check cover it).
        let xlstm = try ModelLoader.load(ModelFixture.directory.appendingPathComponent("tiny-xlstm").path)
        _ = try CoreMLPackage.export(xlstm, to: freshPackagePath("xlstm"))
        XCTAssertEqual(try ANEPackageInfo.read(package: freshPackagePath("xlstm", remove: false)).metadata["recurrent"], 1)
        XCTAssertThrowsError(try ANEWeightFormat(parsing: "int4")) { XCTAssertTrue("\($0)".contains("fp16, int8, int8-blockwise, lut4, lut6, lut8"), "\($0)") }
        XCTAssertEqual(try ANEWeightFormat(parsing: "int8-blockwise"), .int8Blockwise)
        XCTAssertEqual(try ANEWeightFormat(parsing: "lut6"), .lut6)
    }

    /// A GGUF source's tokenizer folder: tokenizer.gguf keeps every metadata entry and no tensor.
    func testMetadataOnlyGGUF() throws {
        var writer = GGUFWriter()
        writer.metadata = [
            ("general.architecture", .string("llama")), ("general.alignment", .u32(64)), ("x.u8", .u8(7)), ("x.i16", .i16(-3)),
            ("x.f64", .f64(0.5)), ("x.array", .array(elementType: 8, [.string("a"), .string("b")])),
        ]
        writer.tensors = [("w", [4], 0, floatBytes([1, 2, 3, 4]))]
        writer.alignment = 64
        let url = temporaryFile("meta-source.gguf")
        try writer.write(to: url)
        let source = try GGUFFile(path: url.path)
        let copy = temporaryFile("meta-copy.gguf")
        try source.metadataOnlyData().write(to: copy)
        let file = try GGUFFile(path: copy.path)
        XCTAssertEqual(file.version, 3)
        XCTAssertTrue(file.tensorInfos.isEmpty)
        XCTAssertEqual(file.metadataKeys, source.metadataKeys)
        XCTAssertEqual(file.metadata, source.metadata)
        XCTAssertEqual(try Data(contentsOf: copy).count % 64, 0)

        guard let gguf = defaultModelPath() else { throw XCTSkip("default model not installed (scripts/test installs it)") }
        let folder = temporaryFile("gguf-tokenizer")
        try? FileManager.default.removeItem(at: folder)
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        try GGUFFile(path: gguf).metadataOnlyData().write(to: folder.appendingPathComponent("tokenizer.gguf"))
        let original = try ModelLoader.loadText(gguf)
        let exported = try ModelLoader.loadText(folder.path)
        let text = "<|im_start|>user\nWhat is the capital of France? ünï 🙂<|im_end|>"
        XCTAssertEqual(exported.tokenizer.encode(text), original.tokenizer.encode(text))
        XCTAssertEqual(exported.chatTemplate, original.chatTemplate)
        XCTAssertEqual(exported.endOfSequenceIds, original.endOfSequenceIds)
    }

    // MARK: Helpers

    private func freshPackagePath(_ name: String, remove: Bool = true) -> String {
        let path = temporaryFile("export-\(name).mlpackage").path
        if remove { try? FileManager.default.removeItem(atPath: path) }
        return path
    }
}

private func anelmFP16(_ f: Float) -> UInt16 { anelm_f32_to_f16(f) }
private func anelmFloat(_ h: UInt16) -> Float { anelm_f16_to_f32(h) }

/// The top-level fields of one protobuf message (a test-side reader, independent of the writer).
private struct ProtobufFields {
    var fields: [(number: Int, varint: UInt64?, bytes: [UInt8]?)] = []

    init(_ data: [UInt8]) throws {
        var i = 0
        func varint() throws -> UInt64 {
            var v: UInt64 = 0
            var shift: UInt64 = 0
            while true {
                guard i < data.count, shift < 64 else { throw ANELMError("truncated varint") }
                let b = data[i]
                i += 1
                v |= UInt64(b & 0x7F) << shift
                if b < 0x80 { return v }
                shift += 7
            }
        }
        while i < data.count {
            let key = try varint()
            switch key & 7 {
            case 0: fields.append((Int(key >> 3), try varint(), nil))
            case 2:
                let n = Int(try varint())
                guard i + n <= data.count else { throw ANELMError("truncated field") }
                fields.append((Int(key >> 3), nil, Array(data[i..<(i + n)])))
                i += n
            case 1: i += 8
            case 5: i += 4
            default: throw ANELMError("wire type \(key & 7)")
            }
        }
    }

    func varint(_ n: Int) -> UInt64? { fields.first { $0.number == n }?.varint }
    func bytes(_ n: Int) -> [[UInt8]] { fields.filter { $0.number == n }.compactMap(\.bytes) }
    func string(_ n: Int) -> String? { bytes(n).first.map { String(decoding: $0, as: UTF8.self) } }
}
