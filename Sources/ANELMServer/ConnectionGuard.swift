import NIOCore
import NIOHTTPTypes

/// How long a connection may take at each stage before the server closes it.
public struct ConnectionTimeouts: Sendable {
    /// From the connection's start until its first request's header is complete.
    public var header: Double
    /// From a request's header until the end of its body.
    public var body: Double
    /// After an answer, until the next request's header is complete (keep-alive).
    public var idle: Double
    /// After an answer sent before its request was read to the end: how long the rest is read
    /// and dropped, waiting for the client to close, before the server closes.
    public var linger: Double

    public init(header: Double = 10, body: Double = 30, idle: Double = 30, linger: Double = 5) {
        self.header = header
        self.body = body
        self.idle = idle
        self.linger = linger
    }
}

/// One per connection, between the HTTP codec and the request handlers: it closes connections
/// that stall (`ConnectionTimeouts`), and it ends connections whose answer went out before the
/// request was read to the end (a 413 or 401 before the body, a 400 for a malformed request).
/// Such an answer is sent with `Connection: close`, the sending half is shut, and whatever the
/// client still sends is read and dropped until it closes or the linger time passes. Without
/// reading on, nobody would see the client's close and the socket would stay open for good.
/// While a request is answered (generation can take long) no deadline applies: a client that
/// has gone is noticed when the answer is written.
final class ConnectionGuard: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPRequestPart
    typealias InboundOut = HTTPRequestPart
    typealias OutboundIn = HTTPResponsePart
    typealias OutboundOut = HTTPResponsePart

    private let timeouts: ConnectionTimeouts
    private var headsRead = 0
    /// Requests read to their end.
    private var requestsRead = 0
    /// Answers written to their end.
    private var answersWritten = 0
    private var closeAfterAnswer = false
    private var draining = false
    private var inputClosed = false
    /// When the current stage began: connection start, a request's header, or an answer's end.
    private var stageStart = NIODeadline.now()
    private var timer: Scheduled<Void>?

    init(timeouts: ConnectionTimeouts) {
        self.timeouts = timeouts
    }

    func handlerAdded(context: ChannelHandlerContext) {
        if context.channel.isActive { rearm(context) }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        timer?.cancel()
        timer = nil
    }

    func channelActive(context: ChannelHandlerContext) {
        stageStart = .now()
        rearm(context)
        context.fireChannelActive()
    }

    func channelInactive(context: ChannelHandlerContext) {
        timer?.cancel()
        timer = nil
        context.fireChannelInactive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if draining { return }
        switch unwrapInboundIn(data) {
        case .head:
            headsRead += 1
            stageStart = .now()
            rearm(context)
        case .body:
            break
        case .end:
            requestsRead += 1
            rearm(context)
        }
        context.fireChannelRead(data)
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        // The request handlers no longer ask for reads: keep reading to see the client's close.
        if draining { return context.read() }
        context.fireChannelReadComplete()
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        if draining { return }
        context.fireErrorCaught(error)
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let event = event as? ChannelEvent, event == .inputClosed {
            inputClosed = true
            if draining { return context.close(promise: nil) }
        }
        context.fireUserInboundEventTriggered(event)
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        switch unwrapOutboundIn(data) {
        case .head(var head) where head.status.kind != .informational:
            // The request this answers (number answersWritten + 1) has not been read to its end.
            guard requestsRead <= answersWritten else { return context.write(data, promise: promise) }
            closeAfterAnswer = true
            head.headerFields[.connection] = "close"
            context.write(wrapOutboundOut(.head(head)), promise: promise)
        case .end:
            answersWritten += 1
            stageStart = .now()
            guard closeAfterAnswer || requestsRead < answersWritten else {
                rearm(context)
                return context.write(data, promise: promise)
            }
            let written = context.eventLoop.makePromise(of: Void.self)
            if let promise { written.futureResult.cascade(to: promise) }
            written.futureResult.assumeIsolated().whenComplete { [self] _ in drain(context) }
            context.write(data, promise: written)
        default:
            context.write(data, promise: promise)
        }
    }

    /// Shuts the sending half and drops what the client still sends until it closes or the
    /// linger time passes.
    private func drain(_ context: ChannelHandlerContext) {
        guard !draining else { return }
        draining = true
        guard !inputClosed, context.channel.isActive else { return context.close(promise: nil) }
        context.close(mode: .output, promise: nil)
        stageStart = .now()
        rearm(context)
        context.read()
    }

    /// Sets the timer for the current stage: closes the connection when it runs out.
    private func rearm(_ context: ChannelHandlerContext) {
        timer?.cancel()
        timer = nil
        let seconds: Double
        if draining {
            seconds = timeouts.linger
        } else if requestsRead > answersWritten {
            // Answering: no deadline. A pipelined request's body waits for this answer, so its
            // time starts when the answer ends.
            return
        } else if headsRead > requestsRead {
            seconds = timeouts.body
        } else {
            seconds = answersWritten == 0 ? timeouts.header : timeouts.idle
        }
        let deadline = stageStart + .nanoseconds(Int64(seconds * 1e9))
        timer = context.eventLoop.assumeIsolated().scheduleTask(deadline: deadline) { [self] in
            timer = nil
            context.close(promise: nil)
        }
    }
}
