package com.example.audiossl.demo

import android.content.Context
import androidx.work.Constraints
import androidx.work.CoroutineWorker
import androidx.work.ExistingPeriodicWorkPolicy
import androidx.work.ExistingWorkPolicy
import androidx.work.OneTimeWorkRequestBuilder
import androidx.work.PeriodicWorkRequestBuilder
import androidx.work.WorkManager
import androidx.work.WorkerParameters
import androidx.work.workDataOf
import com.example.audiossl.core.NotEnoughAudioException
import java.util.concurrent.TimeUnit
import kotlinx.coroutines.Dispatchers
import kotlinx.coroutines.NonCancellable
import kotlinx.coroutines.withContext

/**
 * Runs the `train` signature on the buffered windows, one step at a time, publishing each loss
 * as progress, then saves the weights (and the buffer) atomically.
 */
class TrainWorker(context: Context, params: WorkerParameters) : CoroutineWorker(context, params) {

  override suspend fun doWork(): Result {
    val session = try {
      (applicationContext as DemoApplication).session()
    } catch (e: Exception) {
      return Result.failure(workDataOf(RESULT_MESSAGE to "the bundled model cannot be used: ${e.message}"))
    }
    var trained = 0
    return withContext(Dispatchers.Default) {
      try {
        while (trained < STEPS_PER_JOB && !isStopped) {
          val loss = session.train(1).single()
          trained++
          setProgress(workDataOf(PROGRESS_STEP to trained, PROGRESS_STEPS to STEPS_PER_JOB, PROGRESS_LOSS to loss))
        }
        Result.success(workDataOf(RESULT_MESSAGE to "$trained steps, ${session.examples} examples in total"))
      } catch (e: NotEnoughAudioException) {
        Result.failure(workDataOf(RESULT_MESSAGE to e.message))
      } finally {
        if (trained > 0) withContext(NonCancellable) { session.persist() }
      }
    }
  }

  companion object {
    /** Keys of the work's progress and output data. */
    const val PROGRESS_STEPS = "progress_steps"
    const val PROGRESS_STEP = "progress_step"
    const val PROGRESS_LOSS = "progress_loss"
    const val RESULT_MESSAGE = "result_message"

    /** Unique work names: the manual run and the periodic charging-and-idle run. */
    const val NOW = "train-now"
    const val WHEN_IDLE = "train-when-idle"

    private const val STEPS_PER_JOB = 20
    private const val IDLE_PERIOD_HOURS = 6L

    /** Schedules training every few hours while the phone is charging and idle (kept if scheduled). */
    fun scheduleWhenIdle(context: Context) {
      val constraints = Constraints.Builder().setRequiresCharging(true).setRequiresDeviceIdle(true).build()
      val request = PeriodicWorkRequestBuilder<TrainWorker>(IDLE_PERIOD_HOURS, TimeUnit.HOURS)
        .setConstraints(constraints)
        .build()
      WorkManager.getInstance(context).enqueueUniquePeriodicWork(WHEN_IDLE, ExistingPeriodicWorkPolicy.KEEP, request)
    }

    /** Trains now, without constraints (a run already queued or running is kept). */
    fun trainNow(context: Context) {
      WorkManager.getInstance(context)
        .enqueueUniqueWork(NOW, ExistingWorkPolicy.KEEP, OneTimeWorkRequestBuilder<TrainWorker>().build())
    }
  }
}
