package com.example.audiossl.core

import kotlin.math.sqrt

/**
 * A bounded FIFO of training windows cut from an audio stream.
 *
 * Samples are cut into consecutive, non-overlapping windows of [windowSamples]; a window whose
 * RMS is below [minRms] is dropped; when [capacity] windows are held the oldest goes.
 * [endStream] drops the unfinished window when a recording stops. Thread-safe: the recorder
 * appends while a training job reads batches.
 *
 * @property windowSamples Samples per window (the manifest's `example_samples`).
 * @property capacity Windows kept at most.
 * @property minRms Quieter windows are not kept.
 */
class WindowBuffer(
  val windowSamples: Int,
  val capacity: Int,
  val minRms: Double = Contract.MIN_WINDOW_RMS
) {
  private val windows = ArrayList<FloatArray>()
  private val partial = FloatArray(windowSamples)
  private var filled = 0

  /** Windows dropped as silent so far. */
  var silentWindows = 0
    private set

  init {
    require(windowSamples > 0 && capacity > 0) { "windowSamples and capacity must be positive" }
  }

  /** Windows held. */
  val size: Int
    @Synchronized get() = windows.size

  /**
   * Adds mono samples `samples[offset until offset + length]`.
   *
   * @return How many windows were kept.
   */
  @Synchronized
  fun append(samples: FloatArray, offset: Int = 0, length: Int = samples.size - offset): Int {
    var kept = 0
    var at = offset
    val end = offset + length
    while (at < end) {
      val take = minOf(windowSamples - filled, end - at)
      System.arraycopy(samples, at, partial, filled, take)
      filled += take
      at += take
      if (filled == windowSamples) {
        filled = 0
        if (push(partial.copyOf())) kept++
      }
    }
    return kept
  }

  private fun push(window: FloatArray): Boolean {
    var energy = 0.0
    for (x in window) energy += x.toDouble() * x
    if (sqrt(energy / window.size) < minRms) {
      silentWindows++
      return false
    }
    windows.add(window)
    while (windows.size > capacity) windows.removeAt(0)
    return true
  }

  /** Drops the unfinished window (a recording ended). */
  @Synchronized
  fun endStream() {
    filled = 0
  }

  /**
   * Windows `(offset + j) % size` for `j < batchSize`: successive batches rotate through the
   * buffer when [offset] advances by the batch size (the session passes its example count).
   *
   * @throws NotEnoughAudioException Fewer than [batchSize] windows are held.
   */
  @Synchronized
  fun batch(batchSize: Int, offset: Long): Array<FloatArray> {
    if (windows.size < batchSize) {
      throw NotEnoughAudioException(
        "${windows.size} training windows of $windowSamples samples are buffered; a batch needs " +
          "$batchSize: record for longer"
      )
    }
    return Array(batchSize) { j -> windows[((offset + j) % windows.size).toInt()] }
  }

  /** The buffer as a windows tensor file bound to the model [modelSha256]. */
  @Synchronized
  fun toTensorFile(modelSha256: String): TensorFile {
    val data = FloatArray(windows.size * windowSamples)
    for ((i, window) in windows.withIndex()) System.arraycopy(window, 0, data, i * windowSamples, windowSamples)
    val tensor = NamedTensor(Contract.FORMAT_WINDOWS_TENSOR, intArrayOf(windows.size, windowSamples), data)
    return TensorFile(TensorFileKind.WINDOWS, modelSha256, 0, listOf(tensor))
  }

  /**
   * Replaces the held windows with those of a windows file (the newest [capacity] are kept).
   *
   * @throws TensorFileException The file holds no windows of [windowSamples] samples.
   */
  @Synchronized
  fun load(file: TensorFile, source: String) {
    val tensor = file.tensor(Contract.FORMAT_WINDOWS_TENSOR)
    if (file.kind != TensorFileKind.WINDOWS || tensor == null || tensor.shape.size != 2 ||
      tensor.shape[1] != windowSamples) {
      throw TensorFileException(source, "not a buffer of $windowSamples-sample windows")
    }
    windows.clear()
    for (i in maxOf(0, tensor.shape[0] - capacity) until tensor.shape[0]) {
      windows.add(tensor.data.copyOfRange(i * windowSamples, (i + 1) * windowSamples))
    }
  }
}

/** The buffer holds fewer windows than one training batch. */
class NotEnoughAudioException(message: String) : RuntimeException(message)

/**
 * The most recent [capacity] samples of a stream, for the live embedding. Thread-safe.
 *
 * @property capacity Samples kept (the manifest's `patch_samples`).
 */
class SampleRing(val capacity: Int) {
  private val ring = FloatArray(capacity)
  private var written = 0L

  init {
    require(capacity > 0) { "capacity must be positive" }
  }

  /** Adds `samples[offset until offset + length]`. */
  @Synchronized
  fun append(samples: FloatArray, offset: Int = 0, length: Int = samples.size - offset) {
    for (i in offset until offset + length) {
      ring[(written % capacity).toInt()] = samples[i]
      written++
    }
  }

  /** The last [capacity] samples, oldest first, zero-padded in front until that many arrived. */
  @Synchronized
  fun latest(): FloatArray {
    val out = FloatArray(capacity)
    val available = minOf(written, capacity.toLong()).toInt()
    for (i in 0 until available) {
      out[capacity - available + i] = ring[((written - available + i) % capacity).toInt()]
    }
    return out
  }
}
