package com.example.audiossl.demo

import android.Manifest.permission.RECORD_AUDIO
import android.media.AudioFormat
import android.media.AudioRecord
import android.media.MediaRecorder
import androidx.annotation.RequiresPermission
import kotlinx.coroutines.Dispatchers
import kotlinx.coroutines.isActive
import kotlinx.coroutines.withContext

/**
 * Mono float microphone audio at the model's sample rate.
 *
 * @param sampleRate The manifest's `model.sample_rate`.
 */
class AudioCapture(private val sampleRate: Int) {

  /**
   * Records until the calling coroutine is cancelled, handing each chunk to [onSamples]
   * (the array is reused: copy what you keep).
   *
   * @throws IllegalStateException The device cannot record at this rate or the read fails.
   */
  @RequiresPermission(RECORD_AUDIO)
  suspend fun record(onSamples: (FloatArray, Int) -> Unit) = withContext(Dispatchers.IO) {
    val channel = AudioFormat.CHANNEL_IN_MONO
    val encoding = AudioFormat.ENCODING_PCM_FLOAT
    val minBytes = AudioRecord.getMinBufferSize(sampleRate, channel, encoding)
    check(minBytes > 0) { "this device cannot record $sampleRate Hz mono float audio" }
    val chunk = FloatArray(sampleRate / CHUNKS_PER_SECOND)
    val bufferBytes = maxOf(minBytes, 2 * chunk.size * Float.SIZE_BYTES)
    val record = AudioRecord(MediaRecorder.AudioSource.VOICE_RECOGNITION, sampleRate, channel, encoding, bufferBytes)
    try {
      check(record.state == AudioRecord.STATE_INITIALIZED) { "the microphone could not be opened" }
      record.startRecording()
      while (isActive) {
        val read = record.read(chunk, 0, chunk.size, AudioRecord.READ_BLOCKING)
        check(read >= 0) { "AudioRecord.read failed with $read" }
        onSamples(chunk, read)
      }
    } finally {
      if (record.recordingState == AudioRecord.RECORDSTATE_RECORDING) record.stop()
      record.release()
    }
  }

  private companion object {
    const val CHUNKS_PER_SECOND = 10
  }
}
