import Foundation

#if canImport(Darwin)
    import Darwin
#endif

/// This process's memory as the system counts it: what the server's /metrics, `anelm bench` and the constant-memory
/// tests report.
public enum ProcessMemory {
    /// The resident set size in bytes, or nil where it cannot be read.
    public static func resident() -> Int? {
        #if os(Linux)
            // statm's second field: resident pages.
            guard let statm = try? String(contentsOfFile: "/proc/self/statm", encoding: .utf8) else { return nil }
            let fields = statm.split(separator: " ")
            guard fields.count > 1, let pages = Int(fields[1]) else { return nil }
            return pages * Int(sysconf(Int32(_SC_PAGESIZE)))
        #elseif canImport(Darwin)
            var info = mach_task_basic_info()
            var count = mach_msg_type_number_t(MemoryLayout<mach_task_basic_info>.size / MemoryLayout<natural_t>.size)
            let status = withUnsafeMutablePointer(to: &info) {
                $0.withMemoryRebound(to: integer_t.self, capacity: Int(count)) { task_info(mach_task_self_, task_flavor_t(MACH_TASK_BASIC_INFO), $0, &count) }
            }
            return status == KERN_SUCCESS ? Int(info.resident_size) : nil
        #else
            return nil
        #endif
    }

    /// The peak resident set size in bytes (VmHWM on Linux, ru_maxrss elsewhere), or nil where it cannot be read.
    public static func peakResident() -> Int? {
        #if os(Linux)
            guard let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8),
                let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmHWM:") }),
                let kilobytes = Int(line.split(whereSeparator: { $0 == " " || $0 == "\t" }).dropFirst().first ?? "")
            else { return nil }
            return kilobytes * 1024
        #elseif canImport(Darwin)
            var usage = rusage()
            guard getrusage(RUSAGE_SELF, &usage) == 0 else { return nil }
            return Int(usage.ru_maxrss)  // bytes on Darwin
        #else
            return nil
        #endif
    }
}
