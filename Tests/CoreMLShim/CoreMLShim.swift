import ANELM
import CANELMKernels
import Foundation

// Test-only: the part of Apple's Core ML API that `CoreMLRuntime.swift` uses, declared with Apple's published
// names, signatures and availability (each declaration cites the documentation page it copies), so that the
// runtime compiles on Linux. Behind the declarations, the fp16 executor (`ANEExecutor`) stands in for Core ML:
// `CoreMLStandIn.program` says which lowered program a package was exported from, and each function's
// `prediction(from:using:)` runs that program's function on the inputs and the `MLState` it is given, the way
// Core ML would run the package. Outputs come back with padded row strides, as Core ML's often do, so the
// runtime's strided reads are exercised. Nothing here is linked into the `anelm` products.

/// The stand-in's own knob (not Core ML API): the lowered program an exported package was written from.
public enum CoreMLStandIn {
    nonisolated(unsafe) public static var program: ((URL) throws -> ANEProgram)?
    /// Calls of `prediction(from:using:)` per function name, for tests that check which functions ran.
    nonisolated(unsafe) public static var predictions: [String: Int] = [:]
    /// Output rows are padded to a multiple of this many elements (Core ML aligns strides; 1 = contiguous).
    nonisolated(unsafe) public static var outputStrideAlignment = 16
}

struct CoreMLStandInError: LocalizedError {
    let errorDescription: String?
    init(_ message: String) { errorDescription = message }
}

/// https://developer.apple.com/documentation/coreml/mlcomputeunits
@available(macOS 10.14, iOS 12.0, *)
public enum MLComputeUnits: Int, @unchecked Sendable {
    case cpuOnly = 0
    case cpuAndGPU = 1
    case all = 2
    /// https://developer.apple.com/documentation/coreml/mlcomputeunits/cpuandneuralengine
    @available(macOS 13.0, iOS 16.0, *) case cpuAndNeuralEngine = 3
}

/// https://developer.apple.com/documentation/coreml/mlmultiarraydatatype
@available(macOS 10.13, iOS 11.0, *)
public enum MLMultiArrayDataType: Int, @unchecked Sendable {
    case double = 65600
    case float32 = 65568
    /// https://developer.apple.com/documentation/coreml/mlmultiarraydatatype/float16
    @available(macOS 12.0, iOS 15.0, *) case float16 = 65552
    case int32 = 131104

    var byteSize: Int {
        switch self {
        case .double: 8
        case .float32, .int32: 4
        case .float16: 2
        }
    }
}

/// https://developer.apple.com/documentation/coreml/mlmodelconfiguration
@available(macOS 10.14, iOS 12.0, *)
open class MLModelConfiguration: NSObject, @unchecked Sendable {
    /// https://developer.apple.com/documentation/coreml/mlmodelconfiguration/computeunits
    open var computeUnits: MLComputeUnits = .all
    /// https://developer.apple.com/documentation/coreml/mlmodelconfiguration/functionname (macOS 15.0, iOS 18.0;
    /// a stored property here, so its availability is in this comment)
    open var functionName: String?
    public override init() {}
}

/// https://developer.apple.com/documentation/coreml/mlmultiarray
@available(macOS 10.13, iOS 11.0, *)
open class MLMultiArray: NSObject, @unchecked Sendable {
    /// https://developer.apple.com/documentation/coreml/mlmultiarray/shape
    open private(set) var shape: [NSNumber]
    /// https://developer.apple.com/documentation/coreml/mlmultiarray/strides
    open private(set) var strides: [NSNumber]
    /// https://developer.apple.com/documentation/coreml/mlmultiarray/datatype
    open private(set) var dataType: MLMultiArrayDataType
    private let storage: UnsafeMutableRawBufferPointer

    /// https://developer.apple.com/documentation/coreml/mlmultiarray/count
    open var count: Int { shape.reduce(1) { $0 * $1.intValue } }

    /// https://developer.apple.com/documentation/coreml/mlmultiarray/init(shape:datatype:)
    public convenience init(shape: [NSNumber], dataType: MLMultiArrayDataType) throws {
        try self.init(shape: shape, dataType: dataType, rowAlignment: 1)
    }

    /// Row-major with the last dimension padded to a multiple of `rowAlignment` elements (the stand-in's outputs).
    init(shape: [NSNumber], dataType: MLMultiArrayDataType, rowAlignment: Int) throws {
        let dims = shape.map(\.intValue)
        guard !dims.isEmpty, dims.allSatisfy({ $0 > 0 }) else { throw CoreMLStandInError("MLMultiArray: invalid shape \(dims)") }
        var strides = [Int](repeating: 1, count: dims.count)
        var extent = ((dims[dims.count - 1] + rowAlignment - 1) / rowAlignment) * rowAlignment
        for axis in stride(from: dims.count - 2, through: 0, by: -1) {
            strides[axis] = extent
            extent *= dims[axis]
        }
        self.shape = shape
        self.strides = strides.map { NSNumber(value: $0) }
        self.dataType = dataType
        storage = UnsafeMutableRawBufferPointer.allocate(byteCount: extent * dataType.byteSize, alignment: 16)
        storage.initializeMemory(as: UInt8.self, repeating: 0xA5)  // padding holds garbage, as it may on a device
    }

    deinit { storage.deallocate() }

    /// https://developer.apple.com/documentation/coreml/mlmultiarray/withunsafemutablebytes(_:)
    @available(macOS 12.3, iOS 15.4, *)
    open func withUnsafeMutableBytes<R>(_ body: (UnsafeMutableRawBufferPointer, [Int]) throws -> R) rethrows -> R {
        try body(storage, strides.map(\.intValue))
    }

    /// https://developer.apple.com/documentation/coreml/mlmultiarray/withunsafebytes(_:)
    @available(macOS 12.3, iOS 15.4, *)
    open func withUnsafeBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        try body(UnsafeRawBufferPointer(storage))
    }

    /// Element offsets of every row-major index.
    var offsets: [Int] {
        var offsets = [0]
        for (size, stride) in zip(shape.map(\.intValue), strides.map(\.intValue)) {
            offsets = offsets.flatMap { base in (0..<size).map { base + $0 * stride } }
        }
        return offsets
    }

    /// The values as floats in row-major order (the stand-in's reading of an input).
    func floats() -> [Float] {
        switch dataType {
        case .float16: return offsets.map { anelm_f16_to_f32(storage.load(fromByteOffset: $0 * 2, as: UInt16.self)) }
        case .float32: return offsets.map { storage.load(fromByteOffset: $0 * 4, as: Float.self) }
        case .int32: return offsets.map { Float(storage.load(fromByteOffset: $0 * 4, as: Int32.self)) }
        case .double: return offsets.map { Float(storage.load(fromByteOffset: $0 * 8, as: Double.self)) }
        }
    }

    /// Writes row-major `values` (the stand-in's filling of an output).
    func store(_ values: [Float]) {
        for (i, o) in offsets.enumerated() {
            switch dataType {
            case .float16: storage.storeBytes(of: anelm_f32_to_f16(values[i]), toByteOffset: o * 2, as: UInt16.self)
            case .float32: storage.storeBytes(of: values[i], toByteOffset: o * 4, as: Float.self)
            case .int32: storage.storeBytes(of: Int32(values[i]), toByteOffset: o * 4, as: Int32.self)
            case .double: storage.storeBytes(of: Double(values[i]), toByteOffset: o * 8, as: Double.self)
            }
        }
    }
}

/// https://developer.apple.com/documentation/coreml/mlfeaturevalue
@available(macOS 10.13, iOS 11.0, *)
open class MLFeatureValue: NSObject, @unchecked Sendable {
    /// https://developer.apple.com/documentation/coreml/mlfeaturevalue/multiarrayvalue
    open private(set) var multiArrayValue: MLMultiArray?
    /// https://developer.apple.com/documentation/coreml/mlfeaturevalue/init(multiarray:)
    public init(multiArray value: MLMultiArray) { multiArrayValue = value }
}

/// https://developer.apple.com/documentation/coreml/mlfeatureprovider
@available(macOS 10.13, iOS 11.0, *)
public protocol MLFeatureProvider {
    /// https://developer.apple.com/documentation/coreml/mlfeatureprovider/featurenames
    var featureNames: Set<String> { get }
    /// https://developer.apple.com/documentation/coreml/mlfeatureprovider/featurevalue(for:)
    func featureValue(for featureName: String) -> MLFeatureValue?
}

/// https://developer.apple.com/documentation/coreml/mldictionaryfeatureprovider
@available(macOS 10.13, iOS 11.0, *)
open class MLDictionaryFeatureProvider: NSObject, MLFeatureProvider, @unchecked Sendable {
    /// https://developer.apple.com/documentation/coreml/mldictionaryfeatureprovider/dictionary
    public let dictionary: [String: MLFeatureValue]
    /// https://developer.apple.com/documentation/coreml/mldictionaryfeatureprovider/init(dictionary:)
    public init(dictionary: [String: Any]) throws {
        var values: [String: MLFeatureValue] = [:]
        for (name, value) in dictionary {
            if let v = value as? MLFeatureValue {
                values[name] = v
            } else if let array = value as? MLMultiArray {
                values[name] = MLFeatureValue(multiArray: array)
            } else {
                throw CoreMLStandInError("MLDictionaryFeatureProvider: \(name) is not a feature value")
            }
        }
        self.dictionary = values
    }
    public var featureNames: Set<String> { Set(dictionary.keys) }
    public func featureValue(for featureName: String) -> MLFeatureValue? { dictionary[featureName] }
}

/// https://developer.apple.com/documentation/coreml/mlmultiarrayconstraint
@available(macOS 10.13, iOS 11.0, *)
open class MLMultiArrayConstraint: NSObject, @unchecked Sendable {
    /// https://developer.apple.com/documentation/coreml/mlmultiarrayconstraint/shape
    open private(set) var shape: [NSNumber]
    /// https://developer.apple.com/documentation/coreml/mlmultiarrayconstraint/datatype
    open private(set) var dataType: MLMultiArrayDataType
    init(shape: [Int], dataType: MLMultiArrayDataType) {
        self.shape = shape.map { NSNumber(value: $0) }
        self.dataType = dataType
    }
}

/// https://developer.apple.com/documentation/coreml/mlstateconstraint
@available(macOS 15.0, iOS 18.0, *)
open class MLStateConstraint: NSObject, @unchecked Sendable {
    /// https://developer.apple.com/documentation/coreml/mlstateconstraint/buffershape
    open private(set) var bufferShape: [NSNumber]
    /// https://developer.apple.com/documentation/coreml/mlstateconstraint/datatype
    open private(set) var dataType: MLMultiArrayDataType
    init(bufferShape: [Int], dataType: MLMultiArrayDataType) {
        self.bufferShape = bufferShape.map { NSNumber(value: $0) }
        self.dataType = dataType
    }
}

/// https://developer.apple.com/documentation/coreml/mlfeaturedescription
@available(macOS 10.13, iOS 11.0, *)
open class MLFeatureDescription: NSObject, @unchecked Sendable {
    /// https://developer.apple.com/documentation/coreml/mlfeaturedescription/name
    open private(set) var name: String
    /// https://developer.apple.com/documentation/coreml/mlfeaturedescription/multiarrayconstraint
    open private(set) var multiArrayConstraint: MLMultiArrayConstraint?
    /// https://developer.apple.com/documentation/coreml/mlfeaturedescription/stateconstraint (macOS 15.0, iOS 18.0)
    open private(set) var stateConstraint: MLStateConstraint?
    init(name: String, multiArray: MLMultiArrayConstraint? = nil, state: MLStateConstraint? = nil) {
        self.name = name
        multiArrayConstraint = multiArray
        stateConstraint = state
    }
}

/// https://developer.apple.com/documentation/coreml/mlmodeldescription
@available(macOS 10.13, iOS 11.0, *)
open class MLModelDescription: NSObject, @unchecked Sendable {
    /// https://developer.apple.com/documentation/coreml/mlmodeldescription/inputdescriptionsbyname
    open private(set) var inputDescriptionsByName: [String: MLFeatureDescription]
    /// https://developer.apple.com/documentation/coreml/mlmodeldescription/outputdescriptionsbyname
    open private(set) var outputDescriptionsByName: [String: MLFeatureDescription]
    /// https://developer.apple.com/documentation/coreml/mlmodeldescription/statedescriptionsbyname (macOS 15.0, iOS 18.0)
    open private(set) var stateDescriptionsByName: [String: MLFeatureDescription]

    /// A function of a lowered program as Core ML describes the MIL function the export wrote for it.
    init(_ graph: ANEGraph) {
        func described(_ names: [String: Int]) -> [String: MLFeatureDescription] {
            names.reduce(into: [:]) { all, entry in
                let tensor = graph.tensors[entry.value]
                let type: MLMultiArrayDataType = tensor.dtype == .int32 ? .int32 : .float16
                all[entry.key] = MLFeatureDescription(name: entry.key, multiArray: MLMultiArrayConstraint(shape: tensor.shape, dataType: type))
            }
        }
        inputDescriptionsByName = described(graph.inputs)
        outputDescriptionsByName = described(graph.outputs)
        stateDescriptionsByName = graph.states.reduce(into: [:]) {
            $0[$1.name] = MLFeatureDescription(name: $1.name, state: MLStateConstraint(bufferShape: $1.shape, dataType: .float16))
        }
    }
}

/// https://developer.apple.com/documentation/coreml/mlstate
@available(macOS 15.0, iOS 18.0, *)
public final class MLState: @unchecked Sendable {
    /// The stand-in's buffers, in the program's state order, and which program made them.
    var buffers: [[Float]]
    let owner: ObjectIdentifier
    init(buffers: [[Float]], owner: ObjectIdentifier) {
        self.buffers = buffers
        self.owner = owner
    }
}

/// https://developer.apple.com/documentation/coreml/mlmodel
@available(macOS 10.13, iOS 11.0, *)
open class MLModel: NSObject, @unchecked Sendable {
    /// https://developer.apple.com/documentation/coreml/mlmodel/modeldescription
    open private(set) var modelDescription: MLModelDescription
    private let executor: ANEExecutor
    private let function: String

    /// https://developer.apple.com/documentation/coreml/mlmodel/init(contentsof:configuration:)
    public init(contentsOf url: URL, configuration: MLModelConfiguration) throws {
        let source = url.appendingPathComponent(MLModel.sourceFile)
        guard let package = try? String(contentsOf: source, encoding: .utf8) else {
            throw CoreMLStandInError("\(url.path) is not a compiled model (the stand-in compiles with MLModel.compileModel)")
        }
        guard let provider = CoreMLStandIn.program else { throw CoreMLStandInError("CoreMLStandIn.program is not set") }
        let program = try provider(URL(fileURLWithPath: package))
        let name = configuration.functionName ?? program.functions.first?.name ?? ""
        guard let graph = program.function(name) else { throw CoreMLStandInError("the model has no function \(name)") }
        executor = Self.executors.executor(for: package, program)
        function = name
        modelDescription = MLModelDescription(graph)
    }

    /// https://developer.apple.com/documentation/coreml/mlmodel/compilemodel(at:completionhandler:)
    @available(macOS 14.4, iOS 17.4, *)
    open class func compileModel(at modelURL: URL, completionHandler handler: @escaping @Sendable (Result<URL, Error>) -> Void) {
        let path = modelURL.path
        DispatchQueue.global().async {
            do {
                guard FileManager.default.fileExists(atPath: URL(fileURLWithPath: path).appendingPathComponent("Manifest.json").path) else {
                    throw CoreMLStandInError("\(path) is not an .mlpackage")
                }
                let compiled = FileManager.default.temporaryDirectory.appendingPathComponent(UUID().uuidString)
                    .appendingPathComponent(URL(fileURLWithPath: path).deletingPathExtension().lastPathComponent + ".mlmodelc")
                try FileManager.default.createDirectory(at: compiled, withIntermediateDirectories: true)
                try Data(path.utf8).write(to: compiled.appendingPathComponent(sourceFile))
                handler(.success(compiled))
            } catch {
                handler(.failure(error))
            }
        }
    }

    /// https://developer.apple.com/documentation/coreml/mlmodel/makestate()
    @available(macOS 15.0, iOS 18.0, *)
    open func makeState() -> MLState { MLState(buffers: executor.makeStates(), owner: ObjectIdentifier(executor)) }

    /// https://developer.apple.com/documentation/coreml/mlmodel/prediction(from:using:)
    @available(macOS 15.0, iOS 18.0, *)
    open func prediction(from inputFeatures: MLFeatureProvider, using state: MLState) throws -> MLFeatureProvider {
        guard state.owner == ObjectIdentifier(executor) else { throw CoreMLStandInError("the state was made by another model") }
        var inputs: [String: [Float]] = [:]
        for (name, description) in modelDescription.inputDescriptionsByName {
            guard let array = inputFeatures.featureValue(for: name)?.multiArrayValue, let constraint = description.multiArrayConstraint else {
                throw CoreMLStandInError("input \(name) is missing")
            }
            guard array.shape == constraint.shape, array.dataType == constraint.dataType else {
                throw CoreMLStandInError("input \(name) has shape \(array.shape) \(array.dataType), the model declares \(constraint.shape) \(constraint.dataType)")
            }
            inputs[name] = array.floats()
        }
        if let extra = inputFeatures.featureNames.subtracting(modelDescription.inputDescriptionsByName.keys).first {
            throw CoreMLStandInError("the model has no input \(extra)")
        }
        CoreMLStandIn.predictions[function, default: 0] += 1
        let values = try executor.run(function, inputs, states: &state.buffers)
        var outputs: [String: MLFeatureValue] = [:]
        for (name, description) in modelDescription.outputDescriptionsByName {
            guard let constraint = description.multiArrayConstraint, let value = values[name] else { throw CoreMLStandInError("no output \(name)") }
            let array = try MLMultiArray(shape: constraint.shape, dataType: constraint.dataType, rowAlignment: CoreMLStandIn.outputStrideAlignment)
            array.store(value)
            outputs[name] = MLFeatureValue(multiArray: array)
        }
        return try MLDictionaryFeatureProvider(dictionary: outputs)
    }

    static let sourceFile = "standin-source.txt"

    /// One executor per package, shared by its functions (their constants and states are the package's).
    final class Executors: @unchecked Sendable {
        private var byPackage: [String: ANEExecutor] = [:]
        private let lock = NSLock()
        func executor(for package: String, _ program: ANEProgram) -> ANEExecutor {
            lock.lock()
            defer { lock.unlock() }
            if let e = byPackage[package] { return e }
            let e = ANEExecutor(program: program, pool: ThreadPool(threads: 1))
            byPackage[package] = e
            return e
        }
    }
    static let executors = Executors()
}
