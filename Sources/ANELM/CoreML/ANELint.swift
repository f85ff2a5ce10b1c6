import Foundation

/// Checks an exported package's MIL program (read back from model.mlmodel) against the failure modes
/// that projects running Core ML models on devices have reported (issue #20). Nothing here can run a
/// package on a Neural Engine, so each rule is a public report, cited, not a measurement.
public struct ANELint: Sendable {
    public enum Severity: String, Sendable, Comparable {
        /// Reported to fail, to miscompute, or to leave the ANE: `--strict` refuses it.
        case violation
        /// Reported to leave the ANE on some systems, or a known cost.
        case warning
        /// Expected and acceptable (the embedding gather's CPU island).
        case note

        public static func < (a: Severity, b: Severity) -> Bool {
            let order: [Severity] = [.violation, .warning, .note]
            return (order.firstIndex(of: a) ?? 0) < (order.firstIndex(of: b) ?? 0)
        }
    }

    /// One rule: what it checks and the public report it rests on.
    public struct Rule: Sendable {
        public let id: String
        public let summary: String
        public let source: String
    }

    public struct Finding: Sendable {
        public let rule: Rule
        public let severity: Severity
        public let message: String
    }

    public static let states = Rule(
        id: "states", summary: "one or two KV state tensors per package, all of one shape",
        source:
            "issue #20 item 1: three or more states failed at prediction on the ANE (ANEProgramProcessRequestDirect status=0x1d) and states of different shapes failed to compile on M1/A14 (CoreML-LLM docs/MLSTATE_PATTERN.md, DECODE_STATE_LAYOUTS.md); ANEMLL keeps one unified cache state `kv_cache_0` per package"
    )
    public static let quantization = Rule(
        id: "quantization", summary: "compressed weights: palettized (LUT per group of output channels) or int8 per output channel, never per block",
        source:
            "coremltools issue 2510 (\"ANE only support per-cout/per-tensor quantization\", per_block falls back to the CPU); apple/coreai-models issue 279 (per-block int8: cosine 0.367 on an iPhone ANE, palettized 0.9975); kasper0406/stablehlo-coreml pull request 110 (convs with linear int8 constexpr weights placed on the CPU by MLComputePlan); coremltools guide, Palettization > Performance (group size 8 or 16)"
    )
    public static let cpuOps = Rule(
        id: "cpu-ops", summary: "no op that device compute plans place on the CPU in the hot path",
        source:
            "issue #20 item 3: reduce_argmax and gather_along_axis were placed on the CPU in device compute-plan audits (CoreML-LLM); topk with k = 1 per chunk is what device projects moved to; item 6: the embedding gather is a small CPU island at the start, acceptable"
    )
    public static let dimensions = Rule(
        id: "dimensions", summary: "no computed tensor dimension above 16,384",
        source:
            "issue #20: tensor dimensions above 16,384 are rejected by the ANE of older chips (hence the output layer in chunks of at most 16,384 channels, as ml-ane-transformers and ANEMLL split it)"
    )
    public static let packageSize = Rule(
        id: "package-size", summary: "at most 1 GB of weights per package",
        source:
            "issue #20 item 4: iOS refuses weight files above roughly 1 GB, and above ~1.4 GB Core ML silently moves the model to the GPU; device projects split the layers into chunked packages (ANEMLL, CoreML-LLM)"
    )
    public static let fp32 = Rule(
        id: "fp32", summary: "no fp32 tensor: the ANE computes in fp16",
        source:
            "Apple, Deploying Transformers on the Apple Neural Engine (ml-ane-transformers): fp16 throughout; an fp32 op is cut out of the ANE region (apple/coreai-models issue 279 notes inline fp32 casts cutting the graph)"
    )
    public static let dynamicShapes = Rule(
        id: "dynamic-shapes", summary: "every shape static; no slice with a dynamic end",
        source:
            "issue #20 item 5: dynamic slice ends fail on the ANE (\"Failed to retrieve parameter end\"); static-size updates at a dynamic start and masked blends work"
    )

    /// Largest weight file per package (1 GB, decimal: iOS's limit is reported as "roughly 1 GB").
    public static let maxPackageBytes = 1_000_000_000
    public static let maxDimension = 16_384
    /// Output channels per LUT above which palettized weights are reported slower (Apple: 8 or 16).
    public static let maxLUTGroup = 16

    public let findings: [Finding]
    public var violations: [Finding] { findings.filter { $0.severity == .violation } }

    /// Lints the package at `packagePath`: its MIL program and its weight file's size.
    public init(package packagePath: String) throws {
        let program = try MILProgramReader(package: packagePath)
        let weights = URL(fileURLWithPath: packagePath).appendingPathComponent(CoreMLPackage.weightsPath).path
        let size = (try? FileManager.default.attributesOfItem(atPath: weights)[.size] as? Int) ?? 0
        self.init(program: program, weightBytes: size)
    }

    public init(program: MILProgramReader, weightBytes: Int) {
        var findings = [Finding]()
        func add(_ rule: Rule, _ severity: Severity, _ message: String) {
            findings.append(Finding(rule: rule, severity: severity, message: message))
        }

        // States: one shape, at most two tensors, the same in every function.
        let stateSets = program.functions.map { f in f.states.map { "\($0.name) \($0.type.map { "\($0.dataTypeName) \($0.staticShape)" } ?? "?")" } }
        for f in program.functions {
            let shapes = Set(f.states.compactMap { $0.type?.shape })
            if f.states.count > 2 { add(Self.states, .violation, "\(f.name): \(f.states.count) state tensors (at most 2)") }
            if shapes.count > 1 { add(Self.states, .violation, "\(f.name): states of \(shapes.count) different shapes") }
        }
        if Set(stateSets).count > 1 { add(Self.states, .violation, "functions declare different states: \(stateSets)") }

        for f in program.functions {
            var cpuOps: [String: Int] = [:]
            var gathers = 0
            for op in f.operations {
                switch op.type {
                case "reduce_argmax", "gather_along_axis": cpuOps[op.type, default: 0] += 1
                case "gather": gathers += 1
                case "constexpr_blockwise_shift_scale":
                    guard let data = op.inputs["data"]?.type?.staticShape, let scale = op.inputs["scale"]?.type?.staticShape, data.count == scale.count else {
                        add(Self.quantization, .violation, "\(f.name): \(op.name): linear quantization of unknown granularity")
                        continue
                    }
                    // Per output channel (or tensor): the scale spans every axis but at most one, fully.
                    let partial = zip(data, scale).filter { $0.1 != 1 && $0.1 != $0.0 }.count
                    let axes = zip(data, scale).filter { $0.1 != 1 }.count
                    if partial > 0 || axes > 1 {
                        add(Self.quantization, .violation, "\(f.name): \(op.name): int8 scales per block (\(scale) for \(data)): CPU-bound on the ANE")
                    } else {
                        add(Self.quantization, .warning, "\(f.name): \(op.name): int8 per output channel: reported CPU-placed on some systems")
                    }
                case "constexpr_lut_to_dense":
                    guard let indices = op.inputs["indices"]?.type?.staticShape, let lut = op.inputs["lut"]?.type?.staticShape, lut.count == indices.count + 2
                    else {
                        add(Self.quantization, .violation, "\(f.name): \(op.name): palettization of unknown granularity")
                        continue
                    }
                    // lut's leading dims count the tables along each axis of the indices.
                    let split = zip(indices, lut.prefix(indices.count)).filter { $0.1 > 1 }
                    // One table for the whole tensor: too coarse when it feeds a conv with more output
                    // channels (axis 0 of its weight) than a group holds.
                    let feedsConv = f.operations.contains { $0.type == "conv" && $0.inputs["weight"]?.name == op.name }
                    if split.isEmpty {
                        if feedsConv, let rows = indices.first, rows > Self.maxLUTGroup {
                            add(
                                Self.quantization, .warning,
                                "\(f.name): \(op.name): one LUT for the whole tensor (Apple: per grouped channel, 8 or 16 channels per table)")
                        }
                    } else if let group = split.map({ $0.0 / $0.1 }).max(), group > Self.maxLUTGroup {
                        add(Self.quantization, .warning, "\(f.name): \(op.name): \(group) output channels per LUT (Apple: 8 or 16)")
                    }
                default: break
                }
                let isConstant = op.type == "const" || op.type.hasPrefix("constexpr_")
                for output in op.outputs {
                    guard let t = output.type else { continue }
                    if !t.isStatic { add(Self.dynamicShapes, .violation, "\(f.name): \(output.name) has a dynamic shape") }
                    if !isConstant, t.dataType == 11 || t.dataType == 12 {
                        add(Self.fp32, .violation, "\(f.name): \(op.type) \(output.name) is \(t.dataTypeName)")
                    }
                    if !isConstant, let d = t.shape.compactMap({ $0 }).max(), d > Self.maxDimension {
                        add(Self.dimensions, .violation, "\(f.name): \(op.type) \(output.name) has a dimension of \(d) (\(t.staticShape))")
                    }
                }
                if op.type == "slice_by_index", let end = op.inputs["end"], end.name != nil,
                    let producer = f.operations.first(where: { $0.outputs.contains { $0.name == end.name } }), producer.type != "const"
                {
                    add(Self.dynamicShapes, .violation, "\(f.name): \(op.name) slices to a computed end")
                }
            }
            for (name, type) in f.inputs + f.states {
                guard let t = type else { continue }
                if !t.isStatic { add(Self.dynamicShapes, .violation, "\(f.name): input \(name) has a dynamic shape") }
                if t.dataType == 11 || t.dataType == 12 { add(Self.fp32, .violation, "\(f.name): input \(name) is \(t.dataTypeName)") }
                if let d = t.shape.compactMap({ $0 }).max(), d > Self.maxDimension {
                    add(Self.dimensions, .violation, "\(f.name): input \(name) has a dimension of \(d)")
                }
            }
            for (type, count) in cpuOps.sorted(by: { $0.key < $1.key }) {
                add(Self.cpuOps, .violation, "\(f.name): \(count) \(type) (placed on the CPU in device audits; use topk k = 1 per chunk)")
            }
            if gathers > 0 { add(Self.cpuOps, .note, "\(f.name): \(gathers) gather (the embedding lookup, a CPU island before the ANE graph)") }
        }
        if weightBytes > Self.maxPackageBytes {
            add(
                Self.packageSize, .violation,
                "weight.bin is \(weightBytes) bytes (> \(Self.maxPackageBytes)): export with --max-package-bytes to chunk the layers")
        }
        // One finding per rule, function and message shape would be noise: fold repeated messages that
        // differ only by op name into a count.
        self.findings = Self.folded(findings)
    }

    /// Findings of the same rule, severity and function whose messages differ only in the op name become one.
    static func folded(_ findings: [Finding]) -> [Finding] {
        var order = [String]()
        var groups: [String: (first: Finding, count: Int)] = [:]
        for f in findings {
            let parts = f.message.split(separator: ":", maxSplits: 2).map(String.init)
            let key = parts.count == 3 ? "\(f.rule.id)|\(f.severity)|\(parts[0])|\(parts[2])" : "\(f.rule.id)|\(f.severity)|\(f.message)"
            if let g = groups[key] {
                groups[key] = (g.first, g.count + 1)
            } else {
                groups[key] = (f, 1)
                order.append(key)
            }
        }
        return order.compactMap { key in
            guard let g = groups[key] else { return nil }
            guard g.count > 1 else { return g.first }
            return Finding(rule: g.first.rule, severity: g.first.severity, message: g.first.message + " (and \(g.count - 1) more like it)")
        }
    }

    public static let rules = [states, quantization, cpuOps, dimensions, packageSize, fp32, dynamicShapes]

    /// A plain-text report: each finding with its rule; then each rule that found nothing, as passed.
    public var text: String {
        var lines = [String]()
        for f in findings.sorted(by: { $0.severity < $1.severity }) {
            lines.append("\(f.severity.rawValue) [\(f.rule.id)] \(f.message)")
            lines.append("    source: \(f.rule.source)")
        }
        let flagged = Set(findings.filter { $0.severity != .note }.map(\.rule.id))
        for rule in Self.rules where !flagged.contains(rule.id) { lines.append("ok [\(rule.id)] \(rule.summary)") }
        return lines.joined(separator: "\n")
    }
}
