package com.example.audiossl.core

import java.io.Closeable
import java.io.File

/**
 * The app's on-device learning state: model, window buffer, persisted weights and the update.
 *
 * Creating a session reads the bundled weights (before anything is restored), loads the saved
 * window buffer and restores the saved weights. Every method is synchronized, so the live
 * embedding and a background training job can share one session.
 *
 * The toolkit's virtual device (`export/device_session.py`) does the same steps with the same files.
 *
 * @property model The model.
 * @property stateDir The app's storage for weights, buffer and update.
 * @param bufferWindows Capacity of the window buffer.
 */
class DeviceSession(
  val model: OnDeviceModel,
  val stateDir: File,
  bufferWindows: Int
) : Closeable {
  /** The model's manifest. */
  val manifest: Manifest = model.manifest

  /** The weights inside the `.tflite` file: the reference of the update. */
  val bundled: Map<String, FloatArray> = model.getWeights()

  /** The persisted weights. */
  val store = WeightStore(stateDir, manifest)

  /** Training windows from the microphone. */
  val buffer = WindowBuffer(manifest.exampleSamples, bufferWindows)

  /** Start-up messages (a skipped weights or buffer file), for the user. */
  val notes = ArrayList<String>()

  /** What was restored at start. */
  val restored: Restored

  /** Training examples behind the current weights. */
  var examples: Long
    private set

  /** Bumped whenever the weights change, so cached embeddings can be refreshed. */
  var weightsVersion = 0
    private set

  private val windowsFile = File(stateDir, Contract.STATE_WINDOWS)

  init {
    if (windowsFile.exists()) {
      try {
        buffer.load(TensorFile.read(windowsFile), windowsFile.path)
      } catch (e: TensorFileException) {
        notes.add("saved buffer ignored: ${e.message}")
      }
    }
    restored = store.restore { model.setWeights(it) }
    notes.addAll(restored.problems)
    examples = restored.examples
  }

  /**
   * Runs [steps] optimizer steps on batches from the buffer (see [WindowBuffer.batch]).
   *
   * @param onStep Called with (step index, loss) after each step.
   * @return The loss of each step.
   * @throws NotEnoughAudioException The buffer holds fewer windows than a batch.
   */
  @Synchronized
  fun train(steps: Int, onStep: (Int, Float) -> Unit = { _, _ -> }): List<Float> {
    val losses = ArrayList<Float>()
    for (step in 0 until steps) {
      val loss = model.train(buffer.batch(manifest.batchSize, examples))
      examples += manifest.batchSize
      weightsVersion++
      losses.add(loss)
      onStep(step, loss)
    }
    return losses
  }

  /** Embeddings of `patch_samples`-long waveforms (see [OnDeviceModel.embed]). */
  @Synchronized
  fun embed(waveforms: Array<FloatArray>): Array<FloatArray> = model.embed(waveforms)

  /** Saves the weights (keeping the last good copy) and the window buffer, atomically. */
  @Synchronized
  fun persist() {
    store.save(model.getWeights(), examples)
    persistBuffer()
  }

  /** Saves the window buffer atomically. */
  fun persistBuffer() {
    buffer.toTensorFile(manifest.modelSha256).write(windowsFile)
  }

  /**
   * Writes the update a federated server aggregates: current minus bundled model weights
   * (optimizer state excluded), with the number of examples behind it.
   *
   * @param file Destination (default: `update.odtf` in [stateDir]).
   * @return [file].
   */
  @Synchronized
  fun writeDelta(file: File = File(stateDir, Contract.STATE_DELTA)): File {
    val current = model.getWeights()
    val tensors = manifest.weights.map { v ->
      val now = current.getValue(v.name)
      val before = bundled.getValue(v.name)
      NamedTensor(v.name, v.shape.toIntArray(), FloatArray(now.size) { now[it] - before[it] })
    }
    TensorFile(TensorFileKind.DELTA, manifest.modelSha256, examples, tensors).write(file)
    return file
  }

  override fun close() = model.close()
}
