/// Which ops of an `ANEGraph` meet the Neural Engine's constraints, grouped by op kind; the rest are
/// the expected fall-backs to CPU/GPU. A static check of the rules Core ML applies, not a measurement.
public struct ANEReport: Sendable {
    /// Op kinds the ANE executes (with fp16 tensors of supported shapes). Not `reduce_argmax` nor
    /// `gather_along_axis`: device compute-plan audits placed both on the CPU; `topk` (k = 1, its int32
    /// indices a second result) is what device projects moved to (issue #20). exp, softplus, maximum and
    /// minimum (xLSTM's gates) are elementwise ops of Core ML's ANE op set, as sigmoid and add are.
    public static let aneKinds: Set<ANEOpKind> = [
        .const_, .conv, .mul, .add, .sub, .maximum, .minimum, .exp, .softplus, .abs, .inverse, .rsqrt, .square, .sigmoid, .tanh, .gelu, .reduceMean, .reduceMax,
        .topk, .softmax, .matmul, .sliceByIndex, .concat, .readState, .writeState,
    ]
    /// Widest conv output the ANE accepts.
    public static let maxConvChannels = 16_384

    public struct Row: Sendable {
        public let kind: ANEOpKind
        public var count = 0
        public var onANE = 0
        /// Why the other ops fall back, each reason once.
        public var reasons: [String] = []
        public var fallBacks: Int { count - onANE }
    }

    public let rows: [Row]

    public init(graph: ANEGraph) {
        var rows: [ANEOpKind: Row] = [:]
        for op in graph.ops {
            var row = rows[op.kind] ?? Row(kind: op.kind)
            row.count += 1
            let problems = Self.problems(op, graph)
            if problems.isEmpty { row.onANE += 1 }
            for p in problems where !row.reasons.contains(p) { row.reasons.append(p) }
            rows[op.kind] = row
        }
        self.rows = ANEOpKind.allCases.compactMap { rows[$0] }
    }

    /// The ANE constraints `op` breaks (empty: it runs there).
    public static func problems(_ op: ANEOp, _ graph: ANEGraph) -> [String] {
        var problems = [String]()
        if !aneKinds.contains(op.kind) { problems.append("op kind not on the ANE") }
        let tensors = (op.inputs + (op.output.map { [$0] } ?? [])).map { graph.tensors[$0] }
        if tensors.contains(where: { $0.dtype != .fp16 }) { problems.append("int32 tensor") }
        let stateShapes = Set(graph.states.map(\.shape))
        for t in tensors {
            if t.shape.contains(where: { $0 <= 0 }) {
                problems.append("non-static shape \(t.shape)")
                break
            }
            // Weights may be any rank ≤ 4, and the KV cache state (its read and the value written back)
            // has a slot axis first, as ANEMLL's (2·layers, …) cache; other activations must be (1, C, 1, S).
            let isConstant = graph.constants[t.id] != nil
            let isState = stateShapes.contains(t.shape)
            if t.shape.count > 4 || (!isConstant && !isState && (t.shape.count != 4 || t.shape[0] != 1 || t.shape[2] != 1)) {
                problems.append("shape \(t.shape) is not (1, C, 1, S)")
                break
            }
        }
        if op.kind == .conv, let out = op.output, graph.tensors[out].shape[1] > maxConvChannels {
            problems.append("conv output of \(graph.tensors[out].shape[1]) channels > \(maxConvChannels)")
        }
        return problems
    }

    /// Ops in total and on the ANE.
    public var totals: (ops: Int, onANE: Int) { (rows.map(\.count).reduce(0, +), rows.map(\.onANE).reduce(0, +)) }

    /// A plain-text table: one line per op kind, then the totals.
    public var table: String {
        let header = ["op", "count", "ANE", "fall-back", "why"]
        var lines = rows.map { [$0.kind.rawValue, "\($0.count)", "\($0.onANE)", "\($0.fallBacks)", $0.reasons.joined(separator: "; ")] }
        let t = totals
        lines.append(["total", "\(t.ops)", "\(t.onANE)", "\(t.ops - t.onANE)", ""])
        let widths = (0..<4).map { i in ([header] + lines).map { $0[i].count }.max() ?? 0 }
        func format(_ cells: [String]) -> String {
            let padded = (0..<4).map { i in
                i == 0
                    ? cells[i].padding(toLength: widths[i], withPad: " ", startingAt: 0)
                    : String(repeating: " ", count: widths[i] - cells[i].count) + cells[i]
            }
            return (padded + [cells[4]]).joined(separator: "  ").trimmingTrailingSpaces()
        }
        return ([format(header)] + lines.map(format)).joined(separator: "\n")
    }
}

extension String {
    fileprivate func trimmingTrailingSpaces() -> String {
        var s = self
        while s.last == " " { s.removeLast() }
        return s
    }
}
